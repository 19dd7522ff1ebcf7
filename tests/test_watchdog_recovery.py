"""The servos' Bus Watchdog seen from the driver and the environment: a control loop that went
quiet with the torque on leaves servos that stopped and refuse goals without a word (goals go
out by SYNC WRITE, which gets no reply). The driver's health read finds it (`WatchdogFired`), the
environment trips on it (fault kind watchdog), and the next torque-on (the scripted reset's first
step) re-arms every servo, so that the claw follows goals again.

Real driver, real dynamixel-sdk, the bus emulator's watchdog on the wall clock. The pauses are
waits until the emulator reports the watchdogs fired (bounded), never fixed sleeps."""

from __future__ import annotations

import types

import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import make_emulated_dclaw, make_simulation
from slac_robot.hardware.errors import WatchdogFired
from slac_robot.safety import EventLog, SafetyTrip, read_events
from slac_robot.safety import faults
from slac_robot.sim import SimRobot
from conftest import compose
from waiting import wait_until

JOINTS = (10, 11, 12, 20, 21, 22, 30, 31, 32)
VALVE, GUIDE = 50, 60
ARMED = 25  # backend.watchdog_s 0.5 s in 20 ms units


def registers(emulator, ids, name: str) -> np.ndarray:
    with emulator.plant.lock:
        return np.array([emulator.motors[i].get(name) for i in ids])


def wait_until_fired(emulator, ids) -> None:
    """The pause: nothing on the bus until every one of ids stopped."""
    wait_until(lambda: all(emulator.watchdog_fired(i) for i in ids), f"the watchdogs of {list(ids)} to fire")


@pytest.fixture
def rig():
    cfg = compose("backend=emulated")
    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    safety = OmegaConf.to_container(cfg.safety, resolve=True)
    simulation = make_simulation(backend)
    sim_robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    robot, clock = make_emulated_dclaw(backend, safety, simulation, sim_robot)
    yield types.SimpleNamespace(robot=robot, clock=clock, emulator=clock.emulator, bus=robot.bus)
    robot.close()


# -- the driver -----------------------------------------------------------------------------------
def test_a_tick_costs_two_transactions_and_a_health_read_three_more(rig):
    robot = rig.robot
    last_health_s = robot.read().health_stamp_s
    for tick in range(12):
        before = rig.bus.transactions
        robot.command(np.full(9, 0.05 * tick))
        rig.clock.tick()
        state = robot.read()
        health_read = state.health_stamp_s != last_health_s
        assert rig.bus.transactions - before == (5 if health_read else 2), tick
        last_health_s = state.health_stamp_s


def test_the_first_read_after_a_pause_finds_the_stopped_servos(rig):
    robot, emulator = rig.robot, rig.emulator
    robot.read()  # a health read now: the next one is not due for health_period_s of ticks
    robot.command(np.full(9, 0.1))
    rig.clock.tick()
    wait_until_fired(emulator, (*JOINTS, GUIDE))
    goals = registers(emulator, JOINTS, "goal_position")
    robot.command(np.full(9, -0.1))  # refused, and the sync write cannot say so
    rig.clock.tick()
    np.testing.assert_array_equal(registers(emulator, JOINTS, "goal_position"), goals)
    with pytest.raises(WatchdogFired) as raised:
        robot.read()
    error = raised.value
    assert error.motor_ids == (*JOINTS, GUIDE)  # the valve's torque is off: it was not watching
    assert error.watchdog_s == 0.5 and error.quiet_s > error.watchdog_s
    assert "backend.watchdog_s" in str(error) and "the next reset re-arms them" in str(error)


def test_the_periodic_health_read_finds_a_fired_watchdog_without_a_pause(rig):
    robot, emulator = rig.robot, rig.emulator
    robot.read()
    with emulator.plant.lock:
        emulator.motors[21].fire_watchdog()  # however it came about: the bus stays busy from here on
    health_ticks = round(0.5 / rig.clock.period_s) + 1  # backend.health_period_s, and one to spare
    with pytest.raises(WatchdogFired, match=r"motor\(s\) \[21\]"):
        for _ in range(health_ticks):
            robot.command(np.zeros(9))
            rig.clock.tick()
            robot.read()


def test_torque_on_is_six_sync_transactions_and_every_servo_ends_enabled_and_armed(rig):
    rig.robot.set_torque(False)
    before = rig.bus.transactions
    rig.robot.set_torque(True)
    assert rig.bus.transactions - before == 6  # whatever the number of servos: a reset at 50 Hz fits
    assert registers(rig.emulator, (*JOINTS, GUIDE), "torque_enable").tolist() == [1] * 10
    assert registers(rig.emulator, (*JOINTS, VALVE, GUIDE), "bus_watchdog").tolist() == [ARMED] * 11


def test_torque_on_after_a_fired_watchdog_rearms_every_servo(rig):
    robot, emulator = rig.robot, rig.emulator
    robot.hold_valve(0.5)  # the valve motor torqued too, as in the middle of a reset
    robot.command(np.full(9, 0.1))
    rig.clock.tick()
    wait_until_fired(emulator, (*JOINTS, VALVE, GUIDE))
    with pytest.raises(WatchdogFired) as raised:
        robot.read()
    assert set(raised.value.motor_ids) == {*JOINTS, VALVE, GUIDE}
    robot.set_torque(True)
    assert registers(emulator, (*JOINTS, VALVE, GUIDE), "bus_watchdog").tolist() == [ARMED] * 11
    robot.read()  # the health read after the pause finds every watchdog armed
    targets = np.array([0.2, -0.3, 0.6] * 3)
    robot.command(targets)
    rig.clock.tick()
    np.testing.assert_array_equal(
        registers(emulator, JOINTS, "goal_position"), robot.calibration.counts_from_joint(JOINTS, targets)
    )
    robot.hold_valve(-0.5)  # the valve takes goals again
    assert emulator.motors[VALVE].get("goal_position") == robot.calibration.counts_from_joint([VALVE], [-0.5])[0]


def test_show_goal_after_a_fired_watchdog_turns_the_guide(rig):
    robot, emulator = rig.robot, rig.emulator
    robot.command(np.zeros(9))
    rig.clock.tick()
    wait_until_fired(emulator, (GUIDE,))
    robot.show_goal(0.7)  # a Goal Position write to a fired servo would be refused (Data Range)
    guide = emulator.motors[GUIDE]
    assert guide.get("goal_position") == robot.calibration.counts_from_joint([GUIDE], [0.7])[0]
    assert guide.get("bus_watchdog") == ARMED


# -- the environment ------------------------------------------------------------------------------
def test_a_pause_mid_episode_trips_watchdog_and_the_next_reset_goes_on(load_cfg, make_fresh_env, tmp_path):
    env = make_fresh_env(load_cfg("backend=emulated", "task.episode_steps=40"))
    env.event_log = EventLog(tmp_path / "safety_events.jsonl")
    env.reset(seed=0)
    emulator = env.clock.emulator
    for _ in range(3):
        env.step(np.zeros(9, dtype=np.float32))

    # A pause with the torque on (model pre-training, a long video write, a debugger): the servos
    # stop, and the next step's read finds them.
    wait_until_fired(emulator, (*JOINTS, GUIDE))
    with pytest.raises(SafetyTrip) as raised:
        env.step(np.zeros(9, dtype=np.float32))
    fault = raised.value.fault
    assert fault.kind == faults.WATCHDOG and not fault.needs_person
    assert "motor(s) [10, 11, 12, 20, 21, 22, 30, 31, 32, 60]" in fault.message
    assert "backend.watchdog_s" in fault.message and "re-arms" in fault.message
    assert fault.limit == 0.5 and fault.value > fault.limit
    assert not any(emulator.motors[i].torque_on for i in (*JOINTS, GUIDE))  # made safe
    (trip,) = [e for e in read_events(env.event_log.path) if e["kind"] == "trip"]
    assert trip["fault"]["kind"] == faults.WATCHDOG and trip["episode"] == 1 and trip["step"] == 4

    # The next reset re-arms every servo, shows the new goal, and the claw follows goals again.
    env.reset(seed=1, options={"goal_rad": 0.7, "valve_rad": 0.0})
    assert registers(emulator, (*JOINTS, VALVE, GUIDE), "bus_watchdog").tolist() == [ARMED] * 11
    assert emulator.motors[GUIDE].get("goal_position") == env.robot.calibration.counts_from_joint([GUIDE], [0.7])[0]
    start = env.robot.read().joint_pos_rad
    action = np.array([0.5, -0.5, 0.5] * 3, dtype=np.float32)
    for _ in range(5):
        observation, _, _, _, info = env.step(action)
        np.testing.assert_array_equal(
            registers(emulator, JOINTS, "goal_position"),
            env.robot.calibration.counts_from_joint(JOINTS, info["joint_targets_rad"]),
        )
    assert np.abs(observation["joint_pos"] - start).max() > 0.3  # the joints followed


def test_a_reset_after_a_pause_between_episodes_works(load_cfg, make_fresh_env):
    """The pause falls between two episodes (the torque still on from the last one): no trip,
    the reset re-arms the servos and brings the claw to its pose."""
    env = make_fresh_env(load_cfg("backend=emulated"))
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.full(9, 0.5, dtype=np.float32))
    wait_until_fired(env.clock.emulator, (*JOINTS, GUIDE))
    env.reset(seed=1)
    assert env.scripted_reset.last_attempts == 1
    assert registers(env.clock.emulator, (*JOINTS, VALVE, GUIDE), "bus_watchdog").tolist() == [ARMED] * 11
