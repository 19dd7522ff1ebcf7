"""The simulated claw behind the emulated bus, and the lockstep clock that steps it.

`SimPlant` connects servo control tables to a `ValveSimulation`:
  joint servos (9): Goal Position -> the position actuators' targets, Torque Enable -> their
      gains; Present Position/Velocity/Current <- the joints, quantised to counts;
  valve servo (50): Present Position <- the valve angle (multi-turn counts); with torque on it
      holds the valve at its goal (how a reset turns the valve on the real station);
  guide servo (60): Goal Position -> the goal marker, which is what the guide shows on hardware.
The mapping between counts and joint angles is the plant's `mounting`: how the horns of the
emulated claw are mounted, which is what `slac-robot calibrate-joints` measures.
A stuck motor (`stick`, the emulator's fault) has its joint pinned where it was, at every
physics step, while its actuator keeps pushing towards the goal.

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
        self._stuck_joints: dict[int, float] = {}  # joint index -> the angle it is stuck at (rad)
        self._stuck_valve_rad: float | None = None

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
            motor.sense_shaft(int(pos[k]))
            motor.set("present_velocity", int(vel[k]))
            motor.set("present_current", int(current))
            motor.set("realtime_tick", tick_ms)
        if self.valve_id in motors:
            valve_counts = self.mounting.counts_from_joint([self.valve_id], [state.valve_pos_rad])[0]
            motors[self.valve_id].sense_shaft(int(valve_counts))
            valve_vel = self.simulation.data.qvel[self.simulation.valve_qvel_index]
            valve_gain = self.mounting.joint_rate([self.valve_id], [1.0])[0]
            motors[self.valve_id].set("present_velocity", int(round(valve_vel / valve_gain / RAD_S_PER_VELOCITY_COUNT)))
        if self.guide_id in motors:
            # The guide points where the goal marker is (its servo is ideal: no physics).
            w, _, _, z = self.simulation.data.mocap_quat[self.simulation.goal_mocap_index]
            guide_counts = self.mounting.counts_from_joint([self.guide_id], [2.0 * np.arctan2(z, w)])[0]
            motors[self.guide_id].sense_shaft(int(guide_counts))

    def apply(self, motors: dict[int, EmulatedMotor]) -> None:
        # A servo left off the bus has no torque; its joint goes limp.
        goals = np.array([motors[i].shaft_goal_counts() if i in motors else 0 for i in self.joint_ids])
        torque = np.array([i in motors and motors[i].torque_on for i in self.joint_ids], dtype=float)
        self.robot.set_torque(torque)
        self.robot.command(self.mounting.joint_from_counts(self.joint_ids, goals))
        if self.valve_id in motors:
            valve = motors[self.valve_id]
            self._valve_hold_rad = (
                float(self.mounting.joint_from_counts([self.valve_id], [valve.shaft_goal_counts()])[0])
                if valve.torque_on
                else None
            )
            self._hold_pinned()
        if self.guide_id in motors and motors[self.guide_id].torque_on:
            goal = self.mounting.joint_from_counts([self.guide_id], [motors[self.guide_id].shaft_goal_counts()])[0]
            self.robot.show_goal(float(goal))

    def stick(self, motor_id: int, stuck: bool) -> None:
        """Jams (stuck=True) or frees a joint servo's or the valve servo's output at its angle now."""
        sim = self.simulation
        if motor_id in self.joint_ids:
            k = self.joint_ids.index(motor_id)
            if stuck:
                self._stuck_joints[k] = float(sim.data.qpos[sim.claw_qpos_index[k]])
            else:
                self._stuck_joints.pop(k, None)
        elif motor_id == self.valve_id:
            self._stuck_valve_rad = float(sim.data.qpos[sim.valve_qpos_index]) if stuck else None
        else:
            raise ValueError(f"motor {motor_id} drives no joint of the simulated claw; only joints and the valve can stick")
        self._hold_pinned()

    def _pin(self) -> None:
        """Puts stuck joints back where they are stuck, and a torqued valve at its goal."""
        sim = self.simulation
        for k, angle in self._stuck_joints.items():
            sim.data.qpos[sim.claw_qpos_index[k]] = angle
            sim.data.qvel[sim.claw_qvel_index[k]] = 0.0
        valve_rad = self._stuck_valve_rad if self._stuck_valve_rad is not None else self._valve_hold_rad
        if valve_rad is not None:
            sim.data.qpos[sim.valve_qpos_index] = valve_rad
            sim.data.qvel[sim.valve_qvel_index] = 0.0

    @property
    def _pinned(self) -> bool:
        return bool(self._stuck_joints) or self._stuck_valve_rad is not None or self._valve_hold_rad is not None

    def _hold_pinned(self) -> None:
        """A torqued valve servo is far stiffer than the fingers: it pins the valve at its goal
        (and a stuck joint or valve stays put); the derived quantities follow the pinned state."""
        if not self._pinned:
            return
        self._pin()
        mujoco.mj_forward(self.simulation.model, self.simulation.data)

    def step_period(self) -> None:
        """Advances the physics by one control period (called under `lock`)."""
        self._hold_pinned()
        if self._stuck_joints or self._stuck_valve_rad is not None:
            # A jam holds at every physics step, not only between control periods.
            sim = self.simulation
            for _ in range(sim.substeps):
                self._pin()
                mujoco.mj_step(sim.model, sim.data)
        else:
            self.simulation.step_period()
        self._hold_pinned()


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
