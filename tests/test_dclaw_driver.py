"""The D'Claw driver (dynamixel-sdk) against the bus emulator in front of the simulated claw:
connection, round trip in joint units with the calibration applied, every injected fault, and
the same trajectory through backend=emulated as through backend=sim."""

from __future__ import annotations

import math
import pathlib
import threading
import types

import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import make_action_filter, make_bus, make_emulated_dclaw, make_simulation
from slac_robot.calibration.joints import NOMINAL_FILE, JointCalibration, MotorCalibration
from slac_robot.config import ConfigError
from slac_robot.hardware.bus import latency_timer_warning
from slac_robot.hardware.check import format_table, survey
from slac_robot.hardware.control_table import MODEL_BY_NAME, RAD_PER_COUNT
from slac_robot.hardware.errors import (
    BusTimeout,
    CorruptPacket,
    DynamixelError,
    MotorHardwareError,
    MotorMissing,
    PortNotFound,
    PortVanished,
)
from slac_robot.sim import SimClock, SimRobot
from conftest import compose

HALF_COUNT_RAD = RAD_PER_COUNT / 2 + 1e-9
JOINTS = (10, 11, 12, 20, 21, 22, 30, 31, 32)


def sections(*overrides: str) -> tuple[dict, dict]:
    cfg = compose("backend=emulated", *overrides)
    return OmegaConf.to_container(cfg.backend, resolve=True), OmegaConf.to_container(cfg.safety, resolve=True)


def build_rig(*overrides: str):
    """Simulation, emulator, bus, lockstep clock and driver, as backend=emulated builds them (no cameras)."""
    backend, safety = sections(*overrides)
    simulation = make_simulation(backend)
    sim_robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    robot, clock = make_emulated_dclaw(backend, safety, simulation, sim_robot)
    return types.SimpleNamespace(simulation=simulation, emulator=clock.emulator, bus=robot.bus, clock=clock, robot=robot)


@pytest.fixture
def rig():
    built = build_rig()
    yield built
    built.robot.close()


def write_calibration(path: pathlib.Path, offsets: dict[int, float], directions: dict[int, int] = {}) -> str:
    nominal = JointCalibration.load(NOMINAL_FILE)
    motors = {
        i: MotorCalibration(nominal[i].offset_rad + offsets.get(i, 0.0), 1.0, directions.get(i, 1))
        for i in nominal.motors
    }
    return str(JointCalibration(motors).save(path))


# -- connecting ---------------------------------------------------------------------------------
def test_connect_configures_every_servo(rig):
    motors = rig.emulator.motors
    for motor_id, motor in motors.items():
        assert motor.get("return_delay_time") == 0, motor_id
        assert motor.get("bus_watchdog") == 25, motor_id  # 0.5 s in 20 ms units
    assert all(motors[i].get("operating_mode") == 3 and motors[i].torque_on for i in (*JOINTS, 60))
    assert motors[50].get("operating_mode") == 4 and not motors[50].torque_on  # the valve turns freely
    # Joint 10 (top): +-0.48 rad around count 1024 (ROBEL's offset -pi/2).
    assert motors[10].get("min_position_limit") == round(1024 - 0.48 / RAD_PER_COUNT)
    assert motors[10].get("max_position_limit") == round(1024 + 0.48 / RAD_PER_COUNT)
    assert set(rig.robot.models.values()) == {MODEL_BY_NAME["XM430-W350"].number}


def test_a_missing_motor_is_named_and_nothing_is_left_open():
    with pytest.raises(MotorMissing, match=r"\[32\]"):
        build_rig("backend.retries=0", "backend.emulator.absent_ids=[32]")
    assert not any(t.name == "bus-emulator" for t in threading.enumerate())  # the emulator was stopped


def test_servos_without_the_bus_watchdog_are_refused_before_anything_moves():
    # The watchdog is what stops the claw when the driver dies; firmware 37 predates it.
    with pytest.raises(MotorMissing, match=r"10 \(firmware 37\).*predate the Bus Watchdog.*DYNAMIXEL Wizard"):
        build_rig("backend.emulator.firmware_version=37")
    assert not any(t.name == "bus-emulator" for t in threading.enumerate())
    build_rig("backend.emulator.firmware_version=38").robot.close()  # from 38 on it connects


def test_a_missing_port_says_what_to_do():
    backend, _ = sections()
    with pytest.raises(PortNotFound, match="plug in the U2D2"):
        make_bus(backend, "/dev/ttyUSB-not-here")


def test_a_missing_calibration_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="calibrate-joints"):
        build_rig(f"backend.calibration_file={tmp_path / 'none.yaml'}")


def test_latency_timer_above_one_ms_warns_with_the_fix(tmp_path):
    sysfs = tmp_path / "usb-serial"
    (sysfs / "ttyUSB7").mkdir(parents=True)
    device = tmp_path / "ttyUSB7"
    device.touch()
    (sysfs / "ttyUSB7" / "latency_timer").write_text("16\n")
    warning = latency_timer_warning(str(device), sysfs)
    assert "16 ms" in warning and "echo 1 | sudo tee" in warning and "99-dynamixel-ftdi-latency.rules" in warning
    (sysfs / "ttyUSB7" / "latency_timer").write_text("1\n")
    assert latency_timer_warning(str(device), sysfs) is None


# -- round trip ---------------------------------------------------------------------------------
def test_targets_reach_the_simulation_and_readings_come_back_in_joint_units(rig):
    sim = rig.simulation
    targets = np.array([0.2, -0.5, 0.9, -0.1, -0.7, 1.1, 0.3, -0.4, 0.8])
    rig.robot.command(targets)
    rig.clock.tick()  # waits for the emulator to take the sync write, then steps
    np.testing.assert_allclose(sim.data.ctrl[sim.claw_actuator_index], targets, atol=HALF_COUNT_RAD)
    for _ in range(5):
        rig.clock.tick()
    state = rig.robot.read()
    np.testing.assert_allclose(state.joint_pos_rad, sim.data.qpos[sim.claw_qpos_index], atol=HALF_COUNT_RAD)
    assert state.valve_pos_rad == pytest.approx(sim.data.qpos[sim.valve_qpos_index], abs=HALF_COUNT_RAD)
    assert np.max(np.abs(state.joint_pos_rad - targets)) < 0.25  # the claw moved towards the targets
    assert state.stamp_s == pytest.approx(sim.data.time)
    assert state.health_stamp_s is not None and state.health_age_s >= 0
    velocity_count_rad_s = 0.229 * 2 * math.pi / 60
    np.testing.assert_allclose(state.joint_vel_rad_s, sim.data.qvel[sim.claw_qvel_index], atol=velocity_count_rad_s)


@pytest.mark.parametrize("model", ["XM430-W350", "XH430-V210"])
def test_current_is_converted_with_the_models_unit(model):
    rig = build_rig(f"backend.emulator.joint_model={model}")
    try:
        rig.robot.command(np.array([0.4, 0.9, -1.2] * 3))
        rig.clock.tick()
        state = rig.robot.read()
        counts = np.array([abs(rig.emulator.motors[i].get("present_current")) for i in JOINTS])
        assert counts.max() > 0
        np.testing.assert_allclose(state.joint_current_a, counts * MODEL_BY_NAME[model].amp_per_current_count)
    finally:
        rig.robot.close()


def test_the_calibration_file_undoes_how_the_horns_are_mounted(tmp_path):
    offsets = {10: 0.31, 11: -0.2, 22: 0.45, 31: -0.37, 50: 1.0}
    mounting = write_calibration(tmp_path / "mounting.yaml", offsets, directions={21: -1})
    # Watchdogs off: the first rig's bus stays quiet while the second is built (longer than 0.5 s
    # on a busy machine), which would stop its servos (tests/test_watchdog_recovery.py).
    right = build_rig(f"backend.emulator.mounting_file={mounting}", f"backend.calibration_file={mounting}",
                      "backend.watchdog_s=0")
    wrong = build_rig(f"backend.emulator.mounting_file={mounting}", "backend.watchdog_s=0")  # nominal calibration
    try:
        for rig in (right, wrong):
            rig.robot.command(np.array([0.1, -0.3, 0.5] * 3))
            rig.clock.tick()
        sim_q = right.simulation.data.qpos[right.simulation.claw_qpos_index]
        np.testing.assert_allclose(right.robot.read().joint_pos_rad, sim_q, atol=HALF_COUNT_RAD)
        wrong_q = wrong.robot.read().joint_pos_rad
        sim_q_wrong = wrong.simulation.data.qpos[wrong.simulation.claw_qpos_index]
        assert abs(wrong_q[0] - sim_q_wrong[0]) > 0.2  # nominal offsets misread a re-mounted horn
    finally:
        right.robot.close()
        wrong.robot.close()


def test_hold_valve_turns_the_valve_the_short_way_round_holds_it_then_frees_it(rig):
    sim = rig.simulation
    valve = rig.emulator.motors[50]
    start = rig.robot.read().valve_pos_rad
    rig.robot.hold_valve(start + 2 * math.pi + 1.2)  # the same angle as start + 1.2: no whole turn
    assert valve.torque_on
    rig.clock.tick()
    assert rig.robot.read().valve_pos_rad == pytest.approx(start + 1.2, abs=HALF_COUNT_RAD)
    # Held: fingers sweeping across it do not turn it.
    for _ in range(5):
        rig.robot.command(np.array([0.4, 0.0, 0.0] * 3))
        rig.clock.tick()
    assert rig.robot.read().valve_pos_rad == pytest.approx(start + 1.2, abs=HALF_COUNT_RAD)
    rig.robot.hold_valve(None)
    assert not valve.torque_on
    sim.data.qvel[sim.valve_qvel_index] = 3.0  # a push: the valve now turns freely
    rig.clock.tick()
    assert abs(rig.robot.read().valve_pos_rad - (start + 1.2)) > 0.05


def turn_the_valve(rig, turns: float, speed_rad_s: float = 0.0) -> float:
    """Adds whole turns to the simulated valve (what the fingers do over a long session); returns
    its angle in the simulation, unwrapped."""
    sim = rig.simulation
    sim.data.qpos[sim.valve_qpos_index] += turns * 2 * math.pi
    sim.data.qvel[sim.valve_qvel_index] = speed_rad_s
    return float(sim.data.qpos[sim.valve_qpos_index])


def test_hold_valve_clears_the_valve_servos_count_before_it_leaves_the_goal_range(rig):
    # 300 turns since power-up: a goal near there is past the +-256 turns that Goal Position takes.
    valve_rad = turn_the_valve(rig, 300)
    assert rig.robot.read().valve_pos_rad == pytest.approx(valve_rad, abs=HALF_COUNT_RAD)
    rig.robot.hold_valve(valve_rad + 1.2)
    rig.clock.tick()
    assert rig.simulation.data.qpos[rig.simulation.valve_qpos_index] == pytest.approx(valve_rad + 1.2, abs=2 * HALF_COUNT_RAD)
    assert abs(rig.emulator.motors[50].get("present_position")) < 2 * 4096  # counted from within one turn again
    assert math.remainder(rig.robot.read().valve_pos_rad - (valve_rad + 1.2), 2 * math.pi) == pytest.approx(0, abs=2 * HALF_COUNT_RAD)


def test_a_turning_valve_keeps_its_count_while_the_goal_fits_and_else_stops_the_reset_by_name(rig):
    valve = rig.emulator.motors[50]
    valve_rad = turn_the_valve(rig, 200, speed_rad_s=3.0)  # past half the range, still turning
    rig.robot.hold_valve(valve_rad + 1.2)  # the servo refuses the clear; the goal still fits
    assert valve.torque_on and valve.get("goal_position") > 200 * 4096
    rig.robot.hold_valve(None)
    turn_the_valve(rig, 60, speed_rad_s=3.0)  # 260 turns: no goal near the valve fits
    with pytest.raises(DynamixelError, match=r"motor 50.*\+26[01] turns.*refused to clear.*stop the valve"):
        rig.robot.hold_valve(valve_rad)
    assert not valve.torque_on


def test_a_valve_servo_without_clear_warns_while_the_goal_fits_and_then_says_to_update_it(rig):
    valve = rig.emulator.motors[50]
    valve.set("firmware_version", 41)  # before CLEAR (firmware 42)
    valve_rad = turn_the_valve(rig, 200)
    with pytest.warns(UserWarning, match=r"motor 50.*\+20[01] turns.*firmware 42.*DYNAMIXEL Wizard"):
        rig.robot.hold_valve(valve_rad + 1.2)
    assert valve.torque_on  # the reset goes on
    rig.robot.hold_valve(None)
    turn_the_valve(rig, 60)
    with pytest.raises(DynamixelError, match=r"motor 50.*\+26[01] turns.*cannot clear.*firmware 42.*power-cycle"):
        rig.robot.hold_valve(valve_rad)
    assert not valve.torque_on


def test_the_hardware_check_names_firmware_too_old_for_the_watchdog_or_the_valves_clear(rig):
    rig.emulator.motors[11].set("firmware_version", 37)  # before the Bus Watchdog (38)
    rig.emulator.motors[50].set("firmware_version", 41)  # before CLEAR (42)
    reports = {r.motor_id: r for r in survey(rig.bus, [10, 11, 50], None, multi_turn_ids=(50,))}
    assert reports[10].problem is None and reports[10].advice is None
    assert "firmware 37 has no Bus Watchdog" in reports[11].problem and "DYNAMIXEL Wizard" in reports[11].problem
    assert reports[50].problem is None  # a valve that cannot clear its count still runs, for 256 turns
    assert "firmware 41 cannot clear its turn count" in reports[50].advice
    assert "ok (firmware 41 cannot clear" in format_table(list(reports.values()))


def test_torque_off_reaches_every_motor_even_past_one_in_hardware_error(rig):
    rig.emulator.hardware_error(11, 0x04)  # overheating; its status packets now carry Alert
    rig.emulator.motors[11].set("torque_enable", 1)  # a motor whose Shutdown kept the torque on
    rig.robot.set_torque(False)
    assert not any(rig.emulator.motors[i].torque_on for i in (*JOINTS, 60))


def test_show_goal_turns_the_guide_and_the_marker(rig):
    rig.robot.show_goal(0.7)
    guide_counts = rig.emulator.motors[60].get("goal_position")
    assert guide_counts == round((0.7 + math.pi) / RAD_PER_COUNT)
    quat = rig.simulation.data.mocap_quat[rig.simulation.goal_mocap_index]
    assert 2 * math.atan2(quat[3], quat[0]) == pytest.approx(0.7, abs=RAD_PER_COUNT)


# -- faults: each ends in its typed error, never in an old reading ------------------------------
def test_one_dropped_status_packet_is_retried(rig):
    rig.emulator.drop_status(motor_id=21)
    state = rig.robot.read()
    assert rig.bus.retried == 1
    assert state.stamp_s == pytest.approx(rig.simulation.data.time)


def test_status_packets_missing_on_every_try_raise_a_timeout_naming_the_motor(rig):
    rig.emulator.drop_status(count=rig.bus.retries + 1, motor_id=21)
    with pytest.raises(BusTimeout, match=r"motor\(s\) \[21\]") as raised:
        rig.robot.read()
    assert raised.value.motor_ids == (21,)


def test_corrupt_packets_on_every_try_raise_corrupt_packet(rig):
    rig.emulator.corrupt_crc(count=rig.bus.retries + 1, motor_id=12)
    with pytest.raises(CorruptPacket):
        rig.robot.read()


def test_a_late_reply_is_drained_not_taken_for_the_retrys_answer(rig):
    rig.robot.command(np.zeros(9))
    rig.clock.tick()
    # backend=emulated: the reply timeout is ~55 ms, the drain before a retry 100 ms.
    rig.emulator.delay_replies(0.08)
    state = rig.robot.read()
    assert rig.bus.retried == 1  # the retry got its own answer: the late one was discarded
    assert state.stamp_s == pytest.approx(rig.simulation.data.time)
    rig.clock.tick()
    assert rig.robot.read().stamp_s == pytest.approx(rig.simulation.data.time)
    assert rig.bus.retried == 1  # and the bus is in step again: no answer is left over


def test_replies_late_on_every_try_raise_a_timeout(rig):
    rig.emulator.delay_replies(0.08, count=rig.bus.retries + 1)
    with pytest.raises(BusTimeout):
        rig.robot.read()


def test_a_hardware_error_names_the_motor_and_the_error_until_a_reboot(rig):
    rig.emulator.hardware_error(11, 0x20)
    for _ in range(2):  # latched: every read reports it, none hands on a state
        with pytest.raises(MotorHardwareError, match="motor 11 .*overload") as raised:
            rig.robot.read()
    assert (raised.value.motor_id, raised.value.bits) == (11, 0x20)
    rig.robot.reboot(11)
    assert rig.robot.read().joint_error_flags.max() == 0
    assert rig.emulator.motors[11].torque_on


def test_overheating_drops_the_motors_torque_and_is_reported(rig):
    rig.emulator.overheat(21, 86)
    with pytest.raises(MotorHardwareError, match="motor 21 .*overheating"):
        rig.robot.read()
    assert not rig.emulator.motors[21].torque_on


def test_a_vanished_port_is_its_own_error(rig):
    rig.emulator.disconnect()
    with pytest.raises(PortVanished, match="USB cable"):
        rig.robot.read()
    with pytest.warns(RuntimeWarning, match="torque off"):
        rig.robot.close()


# -- backend=emulated against backend=sim -------------------------------------------------------
def test_a_scripted_trajectory_matches_the_simulation():
    """The same open-loop gait through the driver and the emulated bus, and straight into MuJoCo.

    The emulated path quantises goals and readings to counts (2pi/4096 rad), so the two differ a
    little: measured over these 40 steps (4 s, valve turned ~2.4 rad), joints within 0.012 rad
    (a transient as a finger strikes the valve; 0.001 typically) and the valve within 0.014 rad.
    Asserted: joints within 0.05 rad at every step, the valve within 0.05 rad."""
    from slac_robot.policies import ScriptedTurnPolicy

    backend, safety = sections()
    simulation = make_simulation(backend)
    sim_robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    sim_clock = SimClock(simulation)
    sim_robot.set_torque(True)
    rig = build_rig()
    action_filter = make_action_filter(safety, simulation.period_s)
    policy_cfg = OmegaConf.to_container(compose().policy)
    policy_cfg.pop("name")
    policy = ScriptedTurnPolicy(action_filter, hold_within_rad=0.0, **policy_cfg)
    try:
        valve_sim, valve_emulated = [], []
        for _ in range(40):
            targets = action_filter.to_targets(policy.act({}, {"error_rad": 2.0}))
            sim_robot.command(targets)
            sim_clock.tick()
            rig.robot.command(targets)
            rig.clock.tick()
            expected, got = sim_robot.read(), rig.robot.read()
            valve_sim.append(expected.valve_pos_rad)
            valve_emulated.append(got.valve_pos_rad)
            np.testing.assert_allclose(got.joint_pos_rad, expected.joint_pos_rad, atol=0.05)
        assert abs(valve_sim[-1]) > 0.3  # the gait did turn the valve
        np.testing.assert_allclose(valve_emulated, valve_sim, atol=0.05)
    finally:
        rig.robot.close()
