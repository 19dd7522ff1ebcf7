"""The simulated claw behind the emulated bus, and the lockstep clock that steps it.

`SimPlant` connects servo control tables to a `ValveSimulation`:
  joint servos (9): Goal Position -> the position actuators' targets, Torque Enable -> their
      gains; Present Position/Velocity/Current <- the joints, quantised to counts;
  valve servo (50): Present Position <- the valve angle (multi-turn counts); with torque on it
      holds the valve at its goal (how a reset turns the valve on the real station);
  guide servo (60): Goal Position -> the goal marker, which is what the guide shows on hardware.
The mapping between counts and joint angles is the plant's `mounting`: how the horns of the
emulated claw are mounted, which is what `slac-robot calibrate-joints` measures.

`LockstepClock` advances the physics one control period per tick, like the sim backend's clock,
but first waits until the emulator has handled every byte the driver sent: a sync write gets no
reply, so without this wait the step could run before the new goals arrived.
"""

from __future__ import annotations

import threading
from typing import Callable

# slac_robot.sim first: importing it picks the OpenGL platform, which must happen before MuJoCo loads.
from slac_robot.sim import SimRobot
from slac_robot.sim.physics import ValveSimulation

import mujoco  # noqa: E402
import numpy as np

from slac_robot.calibration.joints import JointCalibration
from slac_robot.hardware.control_table import RAD_S_PER_VELOCITY_COUNT
from slac_robot.hardware.emulator.motor import EmulatedMotor
from slac_robot.hardware.emulator.server import BusEmulator


class SimPlant:
    """The Plant of the bus emulator: servos `joint_ids`, `valve_id`, `guide_id` over a SimRobot."""

    def __init__(
        self,
        robot: SimRobot,
        simulation: ValveSimulation,
        mounting: JointCalibration,
        joint_ids: tuple[int, ...],
        valve_id: int | None,
        guide_id: int | None,
    ):
        self.lock = threading.Lock()
        self.robot = robot
        self.simulation = simulation
        self.mounting = mounting
        self.joint_ids = tuple(joint_ids)
        self.valve_id = valve_id
        self.guide_id = guide_id
        mounting.require([i for i in (*joint_ids, valve_id, guide_id) if i is not None], "the emulator's mounting")
        self._valve_hold_rad: float | None = None

    def refresh(self, motors: dict[int, EmulatedMotor]) -> None:
        state = self.robot.read()
        pos = self.mounting.counts_from_joint(self.joint_ids, state.joint_pos_rad)
        gain = self.mounting.joint_rate(self.joint_ids, np.ones(len(self.joint_ids)))
        vel = np.rint(state.joint_vel_rad_s / gain / RAD_S_PER_VELOCITY_COUNT).astype(np.int64)
        tick_ms = int(state.stamp_s * 1000) % 32768
        for k, motor_id in enumerate(self.joint_ids):
            motor = motors.get(motor_id)
            if motor is None:
                continue  # a servo left off the bus (a test of a missing motor)
            current = np.rint(state.joint_current_a[k] / motor.model.amp_per_current_count)
            motor.set("present_position", int(pos[k]))
            motor.set("present_velocity", int(vel[k]))
            motor.set("present_current", int(current))
            motor.set("realtime_tick", tick_ms)
        if self.valve_id in motors:
            valve_counts = self.mounting.counts_from_joint([self.valve_id], [state.valve_pos_rad])[0]
            motors[self.valve_id].set("present_position", int(valve_counts))
            valve_vel = self.simulation.data.qvel[self.simulation.valve_qvel_index]
            valve_gain = self.mounting.joint_rate([self.valve_id], [1.0])[0]
            motors[self.valve_id].set("present_velocity", int(round(valve_vel / valve_gain / RAD_S_PER_VELOCITY_COUNT)))
        if self.guide_id in motors:
            # The guide points where the goal marker is (its servo is ideal: no physics).
            w, _, _, z = self.simulation.data.mocap_quat[self.simulation.goal_mocap_index]
            guide_counts = self.mounting.counts_from_joint([self.guide_id], [2.0 * np.arctan2(z, w)])[0]
            motors[self.guide_id].set("present_position", int(guide_counts))

    def apply(self, motors: dict[int, EmulatedMotor]) -> None:
        # A servo left off the bus has no torque; its joint goes limp.
        goals = np.array([motors[i].get("goal_position") if i in motors else 0 for i in self.joint_ids])
        torque = np.array([i in motors and motors[i].torque_on for i in self.joint_ids], dtype=float)
        self.robot.set_torque(torque)
        self.robot.command(self.mounting.joint_from_counts(self.joint_ids, goals))
        if self.valve_id in motors:
            valve = motors[self.valve_id]
            self._valve_hold_rad = (
                float(self.mounting.joint_from_counts([self.valve_id], [valve.get("goal_position")])[0])
                if valve.torque_on
                else None
            )
            self._hold_valve()
        if self.guide_id in motors and motors[self.guide_id].torque_on:
            goal = self.mounting.joint_from_counts([self.guide_id], [motors[self.guide_id].get("goal_position")])[0]
            self.robot.show_goal(float(goal))

    def _hold_valve(self) -> None:
        """A torqued valve servo is far stiffer than the fingers: it pins the valve at its goal."""
        if self._valve_hold_rad is None:
            return
        sim = self.simulation
        sim.data.qpos[sim.valve_qpos_index] = self._valve_hold_rad
        sim.data.qvel[sim.valve_qvel_index] = 0.0
        mujoco.mj_forward(sim.model, sim.data)

    def step_period(self) -> None:
        """Advances the physics by one control period (called under `lock`)."""
        self._hold_valve()
        self.simulation.step_period()
        self._hold_valve()


class LockstepClock:
    """ControlClock of backend=emulated: a tick steps the physics behind the emulated bus.

    bytes_sent: how many bytes the driver has written to the bus so far.
    `plant` and `emulator` stay reachable here, e.g. for tests that inject faults."""

    overruns: int = 0  # simulated time never falls behind

    def __init__(self, plant: SimPlant, emulator: BusEmulator, bytes_sent: Callable[[], int]):
        self.plant = plant
        self.emulator = emulator
        self._bytes_sent = bytes_sent

    @property
    def period_s(self) -> float:
        return self.plant.simulation.period_s

    def now_s(self) -> float:
        return float(self.plant.simulation.data.time)

    def tick(self) -> None:
        self.emulator.wait_consumed(self._bytes_sent())
        with self.plant.lock:
            self.plant.step_period()
