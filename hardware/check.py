"""`slac-robot check-hardware`: what answers on the bus, and in what state."""

from __future__ import annotations

from dataclasses import dataclass

from slac_robot.calibration.joints import JointCalibration
from slac_robot.hardware.bus import DynamixelBus
from slac_robot.hardware.control_table import (
    CLEAR_FIRMWARE,
    MODELS,
    VOLT_PER_COUNT,
    WATCHDOG_FIRMWARE,
    describe_hardware_error,
)
from slac_robot.hardware.errors import DynamixelError


@dataclass(frozen=True)
class MotorReport:
    """One servo as found on the bus; `problem` is None when all is well."""

    motor_id: int
    model: str = "-"
    firmware: int | None = None
    temperature_c: int | None = None
    voltage_v: float | None = None
    error_status: int | None = None
    position: str = "-"
    problem: str | None = None
    advice: str | None = None  # not wrong, but worth doing (a feature the driver uses missing)


def survey(bus: DynamixelBus, motor_ids: list[int], calibration: JointCalibration | None,
           multi_turn_ids: tuple[int, ...] = ()) -> list[MotorReport]:
    """Pings each motor and reads its firmware, temperature, voltage, error status, position.

    Positions are in joint units (rad) where the calibration has the motor, else in counts.
    Firmware before WATCHDOG_FIRMWARE is a problem (the driver's Bus Watchdog); before
    CLEAR_FIRMWARE on a multi_turn_ids motor (the valve servo), advice to update it."""
    reports = []
    for motor_id in motor_ids:
        try:
            model_number = bus.ping(motor_id)
            if model_number is None:
                reports.append(MotorReport(motor_id, problem="does not answer (power, cable, ID?)"))
                continue
            model = MODELS.get(model_number)
            name = model.name if model else f"model {model_number}"
            read = lambda register: bus.read(motor_id, register, check_alert=False)  # noqa: E731
            error_status, firmware = read("hardware_error_status"), read("firmware_version")
            counts = read("present_position")
            if calibration is not None and motor_id in calibration.motors:
                position = f"{calibration.joint_from_counts([motor_id], [counts])[0]:+.3f} rad"
            else:
                position = f"{counts} counts"
            problem, advice = None, None
            if model is None:
                problem = f"unsupported model number {model_number}"
            elif error_status:
                problem = f"hardware error: {describe_hardware_error(error_status)} (reboot it)"
            elif firmware < WATCHDOG_FIRMWARE:
                problem = (f"firmware {firmware} has no Bus Watchdog, which stops the claw when the driver dies "
                           f"({WATCHDOG_FIRMWARE} or later has it): update it with DYNAMIXEL Wizard 2.0")
            if motor_id in multi_turn_ids and firmware < CLEAR_FIRMWARE:
                advice = (f"firmware {firmware} cannot clear its turn count, which resets need after 128 turns "
                          f"({CLEAR_FIRMWARE} or later can): update it with DYNAMIXEL Wizard 2.0")
            reports.append(
                MotorReport(
                    motor_id, name, firmware, read("present_temperature"),
                    read("present_input_voltage") * VOLT_PER_COUNT, error_status, position, problem, advice,
                )
            )
        except DynamixelError as error:
            reports.append(MotorReport(motor_id, problem=str(error)))
    return reports


def format_table(reports: list[MotorReport]) -> str:
    """The reports as a text table, one line per motor."""
    header = f"{'ID':>3}  {'model':<11} {'firmware':>8} {'temp C':>6} {'volt V':>6} {'error':>5}  {'position':<14} status"
    lines = [header, "-" * len(header)]
    for r in reports:
        cell = lambda v, fmt="": "-" if v is None else format(v, fmt)  # noqa: E731
        lines.append(
            f"{r.motor_id:>3}  {r.model:<11} {cell(r.firmware):>8} {cell(r.temperature_c):>6} "
            f"{cell(r.voltage_v, '.1f'):>6} {cell(r.error_status, '#04x'):>5}  {r.position:<14} "
            f"{r.problem or 'ok'}{f' ({r.advice})' if r.advice else ''}"
        )
    return "\n".join(lines)
