"""Faults end safe: each trip of the environment leaves the robot in its safe state (emulated
servos' torque off, or the simulated actuators' gains zero) and its event in the JSONL log,
and only then raises. Faults are injected through the bus emulator and the simulation."""

from __future__ import annotations

import numpy as np
import pytest

from slac_robot.hardware.emulator.sim_plant import LockstepClock
from slac_robot.safety import EventLog, ResetFailed, SafetyTrip, make_safe, read_events
from slac_robot.safety import faults
from slac_robot.sim import SimClock

JOINT_IDS = (10, 11, 12, 20, 21, 22, 30, 31, 32)
MAX_TICKS = 50  # a bound on loops that wait for a fault to show, not a timing check


@pytest.fixture
def make_logged_env(load_cfg, make_fresh_env, tmp_path):
    """Factory: an env (overrides in hydra syntax) with its event log in tmp_path, reset once."""

    def make(*overrides: str, reset: bool = True):
        env = make_fresh_env(load_cfg("task.episode_steps=40", *overrides))
        env.event_log = EventLog(tmp_path / "safety_events.jsonl")
        if reset:
            env.reset(seed=0)
        return env

    return make


def events(env) -> list[dict]:
    return read_events(env.event_log.path)


def sim_torque_is_off(env) -> bool:
    simulation = env.robot._sim
    return bool(np.all(simulation.model.actuator_gainprm[simulation.claw_actuator_index, 0] == 0))


def emulated_torque_is_off(env) -> bool:
    motors = env.clock.emulator.motors
    return not any(motors[i].torque_on for i in (*JOINT_IDS, 60))


def step_until_trip(env) -> SafetyTrip:
    for _ in range(MAX_TICKS):
        try:
            env.step(np.zeros(9, dtype=np.float32))
        except SafetyTrip as trip:
            return trip
    raise AssertionError(f"no trip within {MAX_TICKS} steps")


def assert_logged_trip(env, kind: str) -> dict:
    (trip,) = [e for e in events(env) if e["kind"] == "trip"]
    assert trip["fault"]["kind"] == kind
    assert trip["stop_mode"] == env.stop_mode
    assert trip["episode"] >= 1 and "step" in trip
    return trip


# -- sim ----------------------------------------------------------------------------------------
def test_a_nan_action_holds_the_claw_and_is_logged(make_logged_env):
    env = make_logged_env()
    measured = env.robot.read().joint_pos_rad
    action = np.full(9, 0.5, dtype=np.float32)
    action[3] = np.nan
    _, _, _, _, info = env.step(action)
    np.testing.assert_array_equal(info["joint_targets_rad"], measured)  # held where it was
    assert info["refused_actions"] == 1
    (event,) = events(env)
    assert event["kind"] == "refused_action" and event["step"] == 0 and event["refused_in_a_row"] == 1
    assert np.isnan(event["action"][3]) and event["held_rad"] == pytest.approx(measured.tolist())
    env.step(np.zeros(9, dtype=np.float32))  # a good action: the episode goes on
    assert not sim_torque_is_off(env)


def test_nan_actions_in_a_row_trip_and_the_next_reset_goes_on(make_logged_env):
    env = make_logged_env()
    limit = env.monitor.limits.max_refused_actions_in_a_row
    for _ in range(limit - 1):
        env.step(np.full(9, np.nan, dtype=np.float32))
    with pytest.raises(SafetyTrip) as raised:
        env.step(np.full(9, np.nan, dtype=np.float32))
    assert raised.value.fault.kind == faults.REFUSED_ACTIONS
    assert not raised.value.fault.needs_person
    assert sim_torque_is_off(env)
    assert_logged_trip(env, faults.REFUSED_ACTIONS)
    assert [e["kind"] for e in events(env)].count("refused_action") == limit
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(9, dtype=np.float32))
    # A trip that needs no person: a reset takes the claw back and the session goes on.
    env.reset(seed=1)
    assert not sim_torque_is_off(env)
    env.step(np.zeros(9, dtype=np.float32))


def test_a_joint_faster_than_the_limit_trips_velocity_and_holds_before_torque_off(make_logged_env):
    env = make_logged_env("safety.health.max_joint_speed_rad_s=0.5")
    start_s = env.clock.now_s()
    with pytest.raises(SafetyTrip) as raised:
        for _ in range(MAX_TICKS):
            env.step(np.ones(9, dtype=np.float32))
    fault = raised.value.fault
    assert fault.kind == faults.VELOCITY and fault.value > 0.5
    trip = assert_logged_trip(env, faults.VELOCITY)
    assert trip["fault"]["joints"] == list(fault.joints) and trip["stop_failures"] == []
    assert sim_torque_is_off(env)
    # hold_then_torque_off: stop_hold_s of ticks passed after the tripping step.
    held_ticks = round(env.stop_hold_s / env.clock.period_s)
    assert round((env.clock.now_s() - start_s) / env.clock.period_s) == trip["step"] + held_ticks


def test_an_overheated_claw_trips_at_the_end_of_the_reset(make_logged_env):
    env = make_logged_env("backend.ambient_temperature_c=75.0", "safety.stop_mode=torque_off", reset=False)
    with pytest.raises(SafetyTrip) as raised:
        env.reset(seed=0)
    assert raised.value.fault.kind == faults.OVERHEATING and raised.value.fault.needs_person
    assert sim_torque_is_off(env)
    assert assert_logged_trip(env, faults.OVERHEATING)["step"] == 0


def test_a_reset_that_fails_ends_safe_and_logged(make_logged_env):
    env = make_logged_env("backend.put_right_failed_resets=false")  # as on the real claw: nobody puts it right
    env.step(np.ones(9, dtype=np.float32))
    simulation = env.robot._sim
    simulation.model.dof_damping[simulation.claw_qvel_index[7]] = 1e5  # TH middle stuck
    with pytest.raises(ResetFailed, match=r"TH middle \(joint 7\)"):
        env.reset(seed=1)
    assert sim_torque_is_off(env)
    (event,) = [e for e in events(env) if e["kind"] == "reset_failed"]
    assert "TH middle (joint 7)" in event["message"] and event["attempts"] == env.scripted_reset.attempts
    assert event["episode"] == 2
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(9, dtype=np.float32))


def test_make_safe_on_request_logs_the_reason(make_logged_env):
    env = make_logged_env()
    env.step(np.ones(9, dtype=np.float32))
    assert env.make_safe("SIGTERM") == []
    assert sim_torque_is_off(env)
    (event,) = events(env)
    assert (event["kind"], event["reason"], event["step"]) == ("safe_stop", "SIGTERM", 1)


def test_hold_then_torque_off_holds_the_measured_pose_for_the_hold_time(load_cfg, make_fresh_env):
    env = make_fresh_env(load_cfg())
    env.reset(seed=0)
    env.step(np.ones(9, dtype=np.float32))  # moving
    here = env.robot.read().joint_pos_rad
    start_s = env.clock.now_s()
    assert make_safe(env.robot, env.clock, "hold_then_torque_off", hold_s=0.3) == []
    assert env.clock.now_s() - start_s == pytest.approx(0.3)
    simulation = env.robot._sim
    np.testing.assert_allclose(simulation.data.ctrl[simulation.claw_actuator_index], here)
    assert sim_torque_is_off(env)
    env.robot.set_torque(True)
    start_s = env.clock.now_s()
    assert make_safe(env.robot, env.clock, "torque_off", hold_s=0.3) == []
    assert env.clock.now_s() == start_s and sim_torque_is_off(env)
    failures = make_safe(env.robot, env.clock, "drop_it", hold_s=0.3)
    assert sim_torque_is_off(env) and "unknown stop mode" in failures[0]


# -- emulated: faults injected through the bus emulator -----------------------------------------
def test_a_motor_hardware_error_trips_and_every_servo_ends_torque_off(make_logged_env):
    env = make_logged_env("backend=emulated")
    assert isinstance(env.clock, LockstepClock)
    env.step(np.zeros(9, dtype=np.float32))
    env.clock.emulator.hardware_error(11, 0x20)  # overload on FF middle
    trip = step_until_trip(env)
    assert trip.fault.kind == faults.HARDWARE_ERROR and trip.fault.needs_person
    assert "motor 11" in trip.fault.message and "overload" in trip.fault.message
    assert emulated_torque_is_off(env)
    logged = assert_logged_trip(env, faults.HARDWARE_ERROR)
    assert "motor 11" in logged["fault"]["message"]


def test_a_hot_motor_trips_overheating_before_its_own_shutdown(make_logged_env):
    env = make_logged_env("backend=emulated")
    env.clock.emulator.overheat(21, 75)  # above our 70 C, below the servo's own 80 C limit
    assert env.clock.emulator.motors[21].hardware_error == 0
    trip = step_until_trip(env)  # seen at the next health read (every 0.5 s)
    assert trip.fault.kind == faults.OVERHEATING and trip.fault.joints == (4,)  # motor 21 = MF middle
    assert emulated_torque_is_off(env)
    assert_logged_trip(env, faults.OVERHEATING)


def test_overheating_past_the_servos_limit_trips_as_its_hardware_error(make_logged_env):
    env = make_logged_env("backend=emulated")
    env.clock.emulator.overheat(32, 86)
    trip = step_until_trip(env)
    assert trip.fault.kind == faults.HARDWARE_ERROR and "overheating" in trip.fault.message
    assert emulated_torque_is_off(env)


def test_status_packets_lost_beyond_the_retries_trip_a_bus_error(make_logged_env):
    env = make_logged_env("backend=emulated")
    retries = env.robot.bus.retries
    env.clock.emulator.drop_status(count=retries + 1, motor_id=22)
    trip = step_until_trip(env)
    assert trip.fault.kind == faults.BUS_ERROR and "[22]" in trip.fault.message
    assert not trip.fault.needs_person
    assert trip.stop_failures == ()  # the bus answered again: held, then torque off
    assert emulated_torque_is_off(env)
    assert_logged_trip(env, faults.BUS_ERROR)


def test_a_vanished_port_trips_port_lost_and_logs_what_could_not_be_done(make_logged_env):
    env = make_logged_env("backend=emulated")
    env.clock.emulator.disconnect()
    with pytest.warns(RuntimeWarning, match="torque off"):  # the close at teardown cannot reach them either
        trip = step_until_trip(env)
        assert trip.fault.kind == faults.PORT_LOST and trip.fault.needs_person
        # Nothing on the bus answers: the hold and the torque off fail, and say so (the servos'
        # Bus Watchdog is what stops them on hardware).
        assert trip.stop_failures and any("torque off" in f for f in trip.stop_failures)
        logged = assert_logged_trip(env, faults.PORT_LOST)
        assert logged["stop_failures"] == list(trip.stop_failures)
        env.close()


def test_after_a_stop_the_next_reset_turns_the_guide_to_the_new_goal(make_logged_env):
    env = make_logged_env("backend=emulated")
    env.make_safe("a person stepped in")
    assert emulated_torque_is_off(env)
    _, info = env.reset(seed=0, options={"goal_rad": 0.7, "valve_rad": 0.0})
    guide = env.clock.emulator.motors[60]
    assert guide.torque_on and guide.get("goal_position") == round((0.7 + np.pi) / (2 * np.pi / 4096))
    simulation = env.clock.plant.simulation
    w, _, _, z = simulation.data.mocap_quat[simulation.goal_mocap_index]
    assert 2 * np.arctan2(z, w) == pytest.approx(0.7, abs=2 * np.pi / 4096)


def test_the_sim_clock_never_overruns(load_cfg, make_fresh_env):
    env = make_fresh_env(load_cfg())
    assert isinstance(env.clock, SimClock)
    env.reset(seed=0)
    for _ in range(5):
        env.step(np.zeros(9, dtype=np.float32))
    assert env.clock.overruns == 0
