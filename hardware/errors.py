"""Typed errors of the Dynamixel bus and the D'Claw driver.

Every failure the driver cannot recover from within its bounded retries ends in one of these;
the safety layer catches `DynamixelError` and stops the robot safely. None of them is ever
swallowed, and no reading is ever handed on after one (no stale state passes as fresh).
"""

from __future__ import annotations

from slac_robot.hardware.control_table import describe_hardware_error


# Status packets' error numbers: the servo could not carry the instruction out now; it does not
# know the instruction (e.g. CLEAR before firmware 42).
RESULT_FAIL = 1
INSTRUCTION_ERROR = 2


class DynamixelError(RuntimeError):
    """Base class: something went wrong on the Dynamixel bus."""


class PortNotFound(DynamixelError):
    """The serial device cannot be opened (wrong path, no permission, not plugged in)."""


class PortVanished(DynamixelError):
    """The serial device went away while in use (USB unplugged, adapter reset)."""


class BusTimeout(DynamixelError):
    """A servo did not answer (no status packet) within the timeout, after every retry."""

    def __init__(self, message: str, motor_ids: tuple[int, ...] = ()):
        super().__init__(message)
        self.motor_ids = motor_ids


class CorruptPacket(DynamixelError):
    """Status packets arrived damaged (bad CRC, truncated) after every retry."""


class MotorRejected(DynamixelError):
    """A servo answered with an error number (access, range, length...): a driver or config bug,
    except Result Fail (an instruction the servo cannot carry out now: a CLEAR while it turns) and
    an Instruction Error for an instruction that its firmware predates."""

    def __init__(self, motor_id: int, error_number: int, what: str):
        names = {RESULT_FAIL: "result fail", INSTRUCTION_ERROR: "instruction error", 3: "CRC error", 4: "data range error",
                 5: "data length error", 6: "data limit error", 7: "access error"}
        super().__init__(f"motor {motor_id} rejected {what}: {names.get(error_number, error_number)}")
        self.motor_id = motor_id
        self.error_number = error_number


class MotorHardwareError(DynamixelError):
    """A servo latched a hardware error (register 70); it stays latched until a reboot."""

    def __init__(self, motor_id: int, bits: int):
        super().__init__(
            f"motor {motor_id} reports a hardware error: {describe_hardware_error(bits)} (status 0x{bits:02x}); "
            "check power, load and temperature, then reboot the motor (DClawRobot.reboot or power-cycle)"
        )
        self.motor_id = motor_id
        self.bits = bits


class MotorMissing(DynamixelError):
    """A configured servo does not answer a ping, answers with an unexpected model, or runs firmware
    that predates what the driver relies on (the Bus Watchdog)."""


class WatchdogFired(DynamixelError):
    """Servos' Bus Watchdog (register 98) fired: the bus was quiet for longer than it allows, so
    they stopped where they were and refuse goals (silently: goals go out by SYNC WRITE, which
    gets no reply) until it is cleared by writing 0. `DClawRobot.set_torque(True)` re-arms them.

    motor_ids: the servos whose watchdog reads -1. watchdog_s: the configured time.
    quiet_s: the longest the driver left the bus quiet since it last checked (None: unknown)."""

    def __init__(self, motor_ids: tuple[int, ...], watchdog_s: float, quiet_s: float | None = None):
        quiet = f", the longest quiet seen was {quiet_s:.2f} s" if quiet_s is not None else ""
        super().__init__(
            f"the Bus Watchdog of motor(s) {list(motor_ids)} fired: the control loop went quiet for longer than "
            f"backend.watchdog_s ({watchdog_s} s{quiet}); the servos stopped and ignore goals until re-armed; "
            "the next reset re-arms them (keep the loop ticking, or switch the torque off, during long pauses)"
        )
        self.motor_ids = tuple(motor_ids)
        self.watchdog_s = watchdog_s
        self.quiet_s = quiet_s
