"""One MuJoCo model and its state, shared by the simulated robot, cameras and clock."""

from __future__ import annotations

import mujoco
import numpy as np

from slac_robot.config import require_positive, require_int
from slac_robot.sim import scene


class ValveSimulation:
    """The valve scene's MjModel and MjData, with the indices of the claw and the valve.

    physics_timestep_s: MuJoCo's step (ROBEL: 2.5 ms).
    substeps: physics steps per control period (ROBEL: 40, i.e. 10 Hz control).
    layout: cameras and goal marker (see `scene.SceneLayout`).
    """

    def __init__(
        self,
        physics_timestep_s: float,
        substeps: int,
        layout: scene.SceneLayout,
    ):
        require_positive("backend.physics_timestep_s", physics_timestep_s)
        self.model = scene.load_valve_model(layout, physics_timestep_s)
        self.data = mujoco.MjData(self.model)
        self.substeps = require_int("backend.substeps", substeps)
        self.claw_qpos_index = np.array(
            [self.model.jnt_qposadr[self.model.joint(name).id] for name in scene.CLAW_JOINTS]
        )
        self.claw_qvel_index = np.array(
            [self.model.jnt_dofadr[self.model.joint(name).id] for name in scene.CLAW_JOINTS]
        )
        self.claw_actuator_index = np.array(
            [self.model.actuator(name).id for name in scene.CLAW_JOINTS]
        )
        valve = self.model.joint(scene.VALVE_JOINT).id
        self.valve_qpos_index = int(self.model.jnt_qposadr[valve])
        self.valve_qvel_index = int(self.model.jnt_dofadr[valve])
        self.goal_mocap_index = int(self.model.body_mocapid[self.model.body(scene.GOAL_BODY).id])
        self.valve_hold_rad: float | None = None
        mujoco.mj_forward(self.model, self.data)

    @property
    def period_s(self) -> float:
        """The control period: physics step x substeps."""
        return self.model.opt.timestep * self.substeps

    def step_period(self) -> None:
        """Advances the physics by one control period (the valve pinned while it is held)."""
        self._pin_valve()
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self._pin_valve()

    def hold_valve(self, valve_rad: float | None) -> None:
        """The valve motor: holds the valve at valve_rad from now on (None: it turns freely)."""
        self.valve_hold_rad = valve_rad
        self._pin_valve()

    def _pin_valve(self) -> None:
        # A torqued valve servo is far stiffer than the fingers (kp 2): it pins the valve, at
        # the boundaries of each control period, as the bus emulator's valve servo does.
        if self.valve_hold_rad is None:
            return
        self.data.qpos[self.valve_qpos_index] = self.valve_hold_rad
        self.data.qvel[self.valve_qvel_index] = 0.0
        mujoco.mj_forward(self.model, self.data)


class SimClock:
    """The ControlClock of the simulation: a tick advances the physics by one control period.

    Simulated time never falls behind, so `overruns` stays 0."""

    overruns: int = 0

    def __init__(self, simulation: ValveSimulation):
        self._sim = simulation

    @property
    def period_s(self) -> float:
        return self._sim.period_s

    def now_s(self) -> float:
        return float(self._sim.data.time)

    def tick(self) -> None:
        self._sim.step_period()
