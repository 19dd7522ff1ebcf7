"""The simulated D'Claw: the Robot interface over MuJoCo."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from slac_robot.config import require_positive
from slac_robot.interfaces import RobotState
from slac_robot.sim.physics import ValveSimulation

N_JOINTS = 9


class SimRobot:
    """A Robot whose joints, valve and goal marker live in a ValveSimulation.

    torque_constant_nm_per_a: converts the position actuators' force (N m) into the current a
        servo would draw, so that current limits mean the same in sim and on hardware.
    ambient_temperature_c: the motors' temperature in simulation, which has no thermal model.
    """

    def __init__(
        self,
        simulation: ValveSimulation,
        torque_constant_nm_per_a: float,
        ambient_temperature_c: float,
    ):
        require_positive("backend.torque_constant_nm_per_a", torque_constant_nm_per_a)
        self._sim = simulation
        self._torque_constant_nm_per_a = torque_constant_nm_per_a
        self._temperature_c = np.full(N_JOINTS, ambient_temperature_c, dtype=np.float64)
        model = simulation.model
        act = simulation.claw_actuator_index
        # A position actuator is force = kp * (ctrl - q): gain kp, bias -kp. Torque off zeroes both.
        self._gain_on = model.actuator_gainprm[act, 0].copy()
        self._bias_on = model.actuator_biasprm[act, 1].copy()

    def read(self) -> RobotState:
        sim = self._sim
        data = sim.data
        force_nm = data.actuator_force[sim.claw_actuator_index]
        return RobotState(
            joint_pos_rad=data.qpos[sim.claw_qpos_index].copy(),
            joint_vel_rad_s=data.qvel[sim.claw_qvel_index].copy(),
            joint_current_a=np.abs(force_nm) / self._torque_constant_nm_per_a,
            joint_temperature_c=self._temperature_c.copy(),
            joint_error_flags=np.zeros(N_JOINTS, dtype=np.uint8),
            valve_pos_rad=float(data.qpos[sim.valve_qpos_index]),
            stamp_s=float(data.time),
        )

    def command(self, joint_targets_rad: np.ndarray) -> None:
        self._sim.data.ctrl[self._sim.claw_actuator_index] = joint_targets_rad

    def hold_valve(self, valve_rad: float | None) -> None:
        """The valve motor turns the valve to valve_rad (the short way round) and holds it there;
        None releases it."""
        if valve_rad is None:
            self._sim.hold_valve(None)
            return
        present = float(self._sim.data.qpos[self._sim.valve_qpos_index])
        self._sim.hold_valve(present + math.remainder(valve_rad - present, 2.0 * math.pi))

    def place(self, joint_pos_rad: np.ndarray, valve_pos_rad: float) -> RobotState:
        """Puts claw and valve at rest at a pose, at once (not a Robot method: the simulation's
        hand of god, for tests and for the emulator's claw that a person holds in place)."""
        sim = self._sim
        data = sim.data
        data.qpos[sim.claw_qpos_index] = joint_pos_rad
        data.qpos[sim.valve_qpos_index] = valve_pos_rad
        data.qvel[:] = 0.0
        data.qacc_warmstart[:] = 0.0
        data.ctrl[sim.claw_actuator_index] = joint_pos_rad
        mujoco.mj_forward(sim.model, data)
        return self.read()

    def show_goal(self, goal_rad: float) -> None:
        half = 0.5 * goal_rad
        self._sim.data.mocap_quat[self._sim.goal_mocap_index] = (np.cos(half), 0.0, 0.0, np.sin(half))
        mujoco.mj_forward(self._sim.model, self._sim.data)

    def set_torque(self, enabled: bool | np.ndarray) -> None:
        """enabled: one flag for all joints, or one per joint (the emulated bus's servos)."""
        act = self._sim.claw_actuator_index
        scale = np.asarray(enabled, dtype=np.float64)
        self._sim.model.actuator_gainprm[act, 0] = scale * self._gain_on
        self._sim.model.actuator_biasprm[act, 1] = scale * self._bias_on

    def close(self) -> None:
        self.set_torque(False)
        self.hold_valve(None)
