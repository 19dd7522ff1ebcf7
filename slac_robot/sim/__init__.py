"""MuJoCo backend: ROBEL's D'Claw and valve behind the Robot, Camera and ControlClock interfaces."""

from slac_robot.sim.gl import ensure_offscreen_gl

# MuJoCo picks its OpenGL platform when it is first imported: choose one before that happens.
ensure_offscreen_gl()

from slac_robot.sim.camera import SimCamera  # noqa: E402
from slac_robot.sim.physics import SimClock, ValveSimulation  # noqa: E402
from slac_robot.sim.robot import SimRobot  # noqa: E402

__all__ = ["SimCamera", "SimClock", "SimRobot", "ValveSimulation"]
