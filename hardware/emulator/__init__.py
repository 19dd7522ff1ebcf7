"""A Dynamixel Protocol 2.0 bus emulator on a pseudo-terminal, backed by the simulated claw."""

from slac_robot.hardware.emulator.motor import EmulatedMotor
from slac_robot.hardware.emulator.server import BusEmulator, BusStats, EmulatorStopped

__all__ = ["BusEmulator", "BusStats", "EmulatedMotor", "EmulatorStopped"]
