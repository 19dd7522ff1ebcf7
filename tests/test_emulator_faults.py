"""Faults injected for the safety layer's tests: a stuck motor on the emulated bus (the joint does
not follow its goal, a reset cannot finish) and a frozen simulated camera (its frame goes stale)."""

from __future__ import annotations

import types

import dynamixel_sdk as sdk
import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import make_action_filter, make_emulated_dclaw, make_scripted_reset, make_simulation
from slac_robot.hardware.control_table import MODEL_BY_NAME, RAD_PER_COUNT, REG
from slac_robot.hardware.emulator import BusEmulator, EmulatedMotor
from slac_robot.interfaces import StaleFrameError
from slac_robot.safety import ResetFailed
from slac_robot.sim import SimClock, SimRobot
from slac_robot.sim.camera import SimCamera
from conftest import compose

RESET_POSE = np.array([0.0, -1.0471976, 1.0471976] * 3)
MF_MIDDLE = 21  # joint index 4


def build_rig(*overrides: str):
    cfg = compose("backend=emulated", *overrides)
    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    safety = OmegaConf.to_container(cfg.safety, resolve=True)
    simulation = make_simulation(backend)
    sim_robot = SimRobot(simulation, backend["torque_constant_nm_per_a"], backend["ambient_temperature_c"])
    robot, clock = make_emulated_dclaw(backend, safety, simulation, sim_robot)
    reset = make_scripted_reset(safety, robot, clock, make_action_filter(safety, clock.period_s))
    return types.SimpleNamespace(simulation=simulation, emulator=clock.emulator, clock=clock, robot=robot,
                                 reset=reset)


@pytest.fixture
def rig():
    built = build_rig("safety.reset.stage_timeout_s=1.0", "safety.reset.attempts=1")
    yield built
    built.robot.close()


# -- a stuck motor ----------------------------------------------------------------------------------
def test_a_stuck_joint_stays_put_while_the_others_follow_their_goals(rig):
    k = rig.robot.joint_ids.index(MF_MIDDLE)
    stuck_at = rig.robot.read().joint_pos_rad[k]
    rig.emulator.stick(MF_MIDDLE)
    targets = np.array([0.2, -0.5, 0.9] * 3)
    for _ in range(10):
        rig.robot.command(targets)
        rig.clock.tick()
    state = rig.robot.read()
    assert abs(state.joint_pos_rad[k] - stuck_at) <= RAD_PER_COUNT
    assert state.joint_vel_rad_s[k] == 0.0
    others = np.arange(9) != k
    assert np.max(np.abs(state.joint_pos_rad[others] - targets[others])) < 0.1
    # The servo pushes against the jam: its current is the largest of all.
    assert state.joint_current_a[k] == state.joint_current_a.max() > 0

    rig.emulator.stick(MF_MIDDLE, stuck=False)
    for _ in range(10):
        rig.robot.command(targets)
        rig.clock.tick()
    assert abs(rig.robot.read().joint_pos_rad[k] - targets[k]) < 0.1  # freed, it follows again


def test_a_reset_with_a_stuck_finger_fails_and_says_so(rig):
    rig.emulator.stick(MF_MIDDLE)
    with pytest.raises(ResetFailed, match=r"MF middle \(joint 4\) is .* rad from"):
        rig.reset(RESET_POSE, valve_rad=0.0)
    rig.emulator.stick(MF_MIDDLE, stuck=False)
    state = rig.reset(RESET_POSE, valve_rad=0.0)
    assert np.max(np.abs(state.joint_pos_rad - RESET_POSE)) < 0.0873


def test_a_stuck_valve_is_not_turned_by_its_servo(rig):
    valve_at = rig.robot.read().valve_pos_rad
    rig.emulator.stick(rig.robot.valve_id)
    with pytest.raises(ResetFailed, match=r"the valve is 1\.\d+ rad from"):
        rig.reset(RESET_POSE, valve_rad=valve_at + 1.2)
    assert abs(rig.robot.read().valve_pos_rad - valve_at) <= RAD_PER_COUNT


def test_only_motors_that_drive_something_can_stick(rig):
    with pytest.raises(KeyError, match="no motor 99"):
        rig.emulator.stick(99)
    with pytest.raises(ValueError, match="drives no joint"):
        rig.emulator.stick(rig.robot.guide_id)


def test_a_stuck_ideal_servo_reports_where_it_stuck():
    """Without a plant the servos reach their goals at once, except a stuck one."""
    with BusEmulator({1: EmulatedMotor(1, MODEL_BY_NAME["XM430-W350"])}) as emulator:
        port, ph = sdk.PortHandler(emulator.device_path), sdk.PacketHandler(2.0)
        assert port.openPort()
        try:
            goal, present = REG["goal_position"].address, REG["present_position"].address
            assert ph.write1ByteTxRx(port, 1, REG["torque_enable"].address, 1) == (sdk.COMM_SUCCESS, 0)
            assert ph.write4ByteTxRx(port, 1, goal, 1000) == (sdk.COMM_SUCCESS, 0)
            emulator.stick(1)
            assert ph.write4ByteTxRx(port, 1, goal, 3000) == (sdk.COMM_SUCCESS, 0)  # accepted...
            assert ph.read4ByteTxRx(port, 1, present)[0] == 1000  # ...but the output does not move
            emulator.stick(1, stuck=False)
            assert ph.read4ByteTxRx(port, 1, present)[0] == 3000
        finally:
            port.closePort()


# -- a frozen camera ------------------------------------------------------------------------------
@pytest.fixture
def sim_camera():
    backend = OmegaConf.to_container(compose("backend=sim").backend, resolve=True)
    simulation = make_simulation(backend)
    camera = SimCamera(simulation, "agent", 64, 64)
    yield camera, SimClock(simulation)
    camera.close()


def test_a_frozen_sim_camera_repeats_its_last_frame_until_it_is_stale(sim_camera):
    camera, clock = sim_camera
    max_age_s = 2.5 * clock.period_s
    clock.tick()
    last = camera.read(max_age_s)
    camera.freeze()  # the feed stops on the frame just delivered
    clock.tick()
    clock.tick()
    again = camera.read(max_age_s)
    assert (again.index, again.stamp_s) == (last.index, last.stamp_s)
    np.testing.assert_array_equal(again.image, last.image)
    clock.tick()  # now 3 periods old
    with pytest.raises(StaleFrameError, match="frozen"):
        camera.read(max_age_s)
    assert camera.read().index == last.index  # without a bound it still hands it out

    camera.freeze(False)
    fresh = camera.read(max_age_s)
    assert fresh.index == last.index + 1 and fresh.stamp_s == pytest.approx(clock.now_s())


def test_freezing_before_the_first_read_stops_on_a_frame_of_that_moment(sim_camera):
    camera, clock = sim_camera
    camera.freeze()
    clock.tick()
    frame = camera.read(1.5 * clock.period_s)
    assert frame.index == 1 and frame.stamp_s == pytest.approx(clock.now_s() - clock.period_s)
