"""The scripted reset on the simulated claw and through the real driver and the bus emulator:
it moves through physics, velocity-limited, in ROBEL's order, and detects a reset that did not
work (a finger stuck, a valve that does not turn), retries, asks a person, and fails loudly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import make_scripted_reset
from slac_robot.config import ConfigError
from slac_robot.safety import EventLog, ResetFailed, ScriptedReset, read_events
from slac_robot.safety.reset import MIDDLE_JOINTS
from slac_robot.tasks import wrap_to_pi

from conftest import compose

RESET_POSE = np.asarray(compose().task.reset_pose_rad, dtype=float)
# A claw left anywhere by an episode: inside the joint limits, fingers down on the valve.
SCRAMBLED = np.array([0.4, 0.6, -0.3, -0.35, 0.2, 0.9, 0.1, 0.9, -0.2])


class RecordingRobot:
    """The robot as it is, with every command and valve hold recorded (to check the ramp)."""

    def __init__(self, robot):
        self.robot = robot
        self.commands: list[np.ndarray] = []
        self.measured_before: list[np.ndarray] = []  # the last reading before each command
        self.valve_holds: list[float | None] = []
        self._last_measured = None

    def read(self):
        state = self.robot.read()
        self._last_measured = state.joint_pos_rad
        return state

    def command(self, joint_targets_rad):
        self.commands.append(np.array(joint_targets_rad))
        self.measured_before.append(self._last_measured)
        self.robot.command(joint_targets_rad)

    def hold_valve(self, valve_rad):
        self.valve_holds.append(valve_rad)
        self.robot.hold_valve(valve_rad)

    def __getattr__(self, name):
        return getattr(self.robot, name)


class SlippingValveMotor(RecordingRobot):
    """A valve motor whose gear slipped: it is told to hold the valve and does nothing."""

    def hold_valve(self, valve_rad):
        self.valve_holds.append(valve_rad)


def scripted_reset(env, robot=None, **overrides) -> ScriptedReset:
    safety = OmegaConf.to_container(compose().safety, resolve=True)
    safety["reset"].update(overrides)
    return make_scripted_reset(safety, robot or env.robot, env.clock, env.action_filter)


@pytest.fixture
def sim_env(load_cfg, make_fresh_env):
    return make_fresh_env(load_cfg())


def block_joint(env, joint: int) -> None:
    """Makes one simulated joint all but immovable (a finger caught on something)."""
    simulation = env.robot._sim
    simulation.model.dof_damping[simulation.claw_qvel_index[joint]] = 1e5


def test_a_reset_from_a_scrambled_pose_arrives_through_physics_step_by_step(sim_env):
    env = sim_env
    env.robot.set_torque(True)
    env.robot.place(SCRAMBLED, 2.5)
    robot = RecordingRobot(env.robot)
    reset = scripted_reset(env, robot)
    start_s = env.clock.now_s()
    state = reset(RESET_POSE, valve_rad=-0.8)
    assert np.all(np.abs(state.joint_pos_rad - RESET_POSE) < reset.tolerance_rad)
    assert abs(wrap_to_pi(state.valve_pos_rad + 0.8)) < reset.valve_tolerance_rad
    assert np.all(np.abs(state.joint_vel_rad_s) < reset.settled_speed_rad_s)  # at rest
    assert reset.last_attempts == 1
    ticks = round((env.clock.now_s() - start_s) / env.clock.period_s)
    assert ticks == len(robot.commands) >= 5  # it moved, tick by tick: no teleport
    # Every command within one step of the joints measured just before it.
    step = env.action_filter.max_step_rad
    for measured, command in zip(robot.measured_before, robot.commands):
        assert np.all(np.abs(command - measured) <= step + 1e-12)
    # ROBEL's order: the middle joints stay where they were until the others arrived.
    middle = list(MIDDLE_JOINTS)
    np.testing.assert_allclose(robot.commands[0][middle], SCRAMBLED[middle], atol=1e-9)
    # The valve is turned once the fingers are up, held, and let go at the end.
    assert robot.valve_holds == [-0.8, None]
    assert env.robot._sim.valve_hold_rad is None


def test_a_reset_already_there_costs_no_tick(sim_env):
    env = sim_env
    reset = scripted_reset(env)
    reset(RESET_POSE, 0.3)
    start_s = env.clock.now_s()
    again = reset(RESET_POSE, 0.3)
    assert env.clock.now_s() == start_s
    assert np.all(np.abs(again.joint_pos_rad - RESET_POSE) < reset.tolerance_rad)


def test_the_valve_is_turned_the_short_way_round(sim_env):
    env = sim_env
    reset = scripted_reset(env)
    env.robot.place(RESET_POSE, 3.0)
    state = reset(RESET_POSE, valve_rad=-3.0)  # 0.28 rad on, not 6 rad back
    assert state.valve_pos_rad == pytest.approx(-3.0 + 2 * math.pi, abs=1e-9)


def test_a_stuck_finger_fails_after_every_attempt_and_the_person_is_asked(sim_env):
    env = sim_env
    env.robot.place(SCRAMBLED, 0.0)
    block_joint(env, 4)  # MF middle, caught where the episode left it
    asked = []
    reset = scripted_reset(env, attempts=3)
    reset.ask_person = lambda message: asked.append(message) or False
    with pytest.raises(ResetFailed, match=r"MF middle \(joint 4\) is 1\.\d+ rad from -1\.047") as raised:
        reset(RESET_POSE, 0.5)
    assert reset.last_attempts == 3
    assert len(asked) == 1 and asked[0] == str(raised.value)
    assert "failed 3 times" in asked[0]
    # While the person is asked and after, the claw is limp and the valve free.
    sim = env.robot._sim
    assert np.all(sim.model.actuator_gainprm[sim.claw_actuator_index, 0] == 0)
    assert sim.valve_hold_rad is None


def test_without_a_person_to_ask_the_reset_raises_after_its_attempts(sim_env):
    env = sim_env
    env.robot.place(SCRAMBLED, 0.0)
    block_joint(env, 8)
    reset = scripted_reset(env, attempts=2)
    assert reset.ask_person is None
    with pytest.raises(ResetFailed, match=r"TH bottom \(joint 8\)"):
        reset(RESET_POSE, 0.5)
    assert reset.last_attempts == 2


def test_once_the_person_freed_the_finger_the_reset_tries_again_and_arrives(sim_env):
    env = sim_env
    env.robot.place(SCRAMBLED, 0.0)
    sim = env.robot._sim
    damping = sim.model.dof_damping[sim.claw_qvel_index[1]]
    block_joint(env, 1)
    reset = scripted_reset(env, attempts=2)

    def person_frees_it(message: str) -> bool:
        assert "FF middle (joint 1)" in message
        sim.model.dof_damping[sim.claw_qvel_index[1]] = damping
        return True

    reset.ask_person = person_frees_it
    state = reset(RESET_POSE, 0.5)
    assert reset.last_attempts == 3  # two failed, then one after the person
    assert np.all(np.abs(state.joint_pos_rad - RESET_POSE) < reset.tolerance_rad)


@pytest.mark.parametrize("put_right", [True, False])
def test_in_simulation_a_failed_reset_is_put_right_unasked_unless_configured_otherwise(
    load_cfg, make_fresh_env, tmp_path, put_right
):
    """backend=sim places a wedged claw at the reset pose (logged) where a person would free it,
    so an unattended run goes on; put_right_failed_resets=false keeps the hardware's way."""
    env = make_fresh_env(load_cfg(f"backend.put_right_failed_resets={put_right}"))
    env.event_log = EventLog(tmp_path / "events.jsonl")
    env.scripted_reset.attempts = 2
    asked = []
    env.scripted_reset.ask_person = lambda message: asked.append(message) or False
    env.robot.place(SCRAMBLED, 0.0)
    block_joint(env, 4)
    if put_right:
        obs, _ = env.reset(seed=0)
        assert asked == []
        np.testing.assert_allclose(obs["joint_pos"], RESET_POSE, atol=1e-6)
        env.step(np.zeros(9, dtype=np.float32))  # the episode goes on from there
        (event,) = read_events(tmp_path / "events.jsonl")
        assert event["kind"] == "reset_put_right" and event["attempts"] == 2
        assert "MF middle (joint 4)" in event["message"]
    else:
        with pytest.raises(ResetFailed, match=r"MF middle \(joint 4\)"):
            env.reset(seed=0)
        assert len(asked) == 1
        assert [e["kind"] for e in read_events(tmp_path / "events.jsonl")] == ["reset_failed"]


def test_a_valve_that_does_not_turn_is_detected(sim_env):
    env = sim_env
    env.robot.place(RESET_POSE, 0.0)
    robot = SlippingValveMotor(env.robot)
    reset = scripted_reset(env, robot, attempts=2)
    with pytest.raises(ResetFailed, match=r"the valve is 1\.200 rad from 1\.200") as raised:
        reset(RESET_POSE, valve_rad=1.2)
    assert "(joint" not in str(raised.value)  # the joints did arrive
    assert robot.valve_holds.count(1.2) == 2  # asked to turn it on each attempt


def test_reset_through_the_driver_and_the_emulated_bus(load_cfg, make_fresh_env):
    env = make_fresh_env(load_cfg("backend=emulated"))
    sim_robot = env.clock.plant.robot
    with env.clock.plant.lock:
        sim_robot.place(SCRAMBLED, 2.0)
    valve = env.clock.emulator.motors[50]
    reset = scripted_reset(env)
    state = reset(RESET_POSE, valve_rad=-1.0)
    assert np.all(np.abs(state.joint_pos_rad - RESET_POSE) < reset.tolerance_rad)
    assert abs(wrap_to_pi(state.valve_pos_rad + 1.0)) < reset.valve_tolerance_rad
    assert not valve.torque_on  # released
    assert all(env.clock.emulator.motors[i].torque_on for i in (10, 11, 12, 20, 21, 22, 30, 31, 32))


def test_a_stuck_finger_is_detected_through_the_emulated_bus(load_cfg, make_fresh_env):
    env = make_fresh_env(load_cfg("backend=emulated"))
    with env.clock.plant.lock:
        env.clock.plant.robot.place(SCRAMBLED, 0.0)
        block_joint(env.clock.plant, 5)  # the emulator's simulated claw: MF bottom stuck
    reset = scripted_reset(env, attempts=1)
    with pytest.raises(ResetFailed, match=r"MF bottom \(joint 5\)"):
        reset(RESET_POSE, 0.0)
    assert not env.clock.emulator.motors[50].torque_on


@pytest.mark.parametrize(
    "key, value",
    [("tolerance_rad", 0.0), ("valve_tolerance_rad", -1.0), ("stage_timeout_s", 0), ("settled_speed_rad_s", "slow"), ("attempts", 0)],
)
def test_bad_reset_settings_are_config_errors_naming_them(sim_env, key, value):
    with pytest.raises(ConfigError, match=f"safety.reset.{key}"):
        scripted_reset(sim_env, **{key: value})
