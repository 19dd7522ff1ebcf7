"""`slac-robot check-hardware`: what answers on the bus, and in what state."""

from __future__ import annotations

from dataclasses import dataclass

from slac_robot.calibration.joints import JointCalibration
from slac_robot.hardware.bus import DynamixelBus
from slac_robot.hardware.control_table import MODELS, VOLT_PER_COUNT, describe_hardware_error
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


def survey(bus: DynamixelBus, motor_ids: list[int], calibration: JointCalibration | None) -> list[MotorReport]:
    """Pings each motor and reads its firmware, temperature, voltage, error status, position.

    Positions are in joint units (rad) where the calibration has the motor, else in counts."""
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
            error_status = read("hardware_error_status")
            counts = read("present_position")
            if calibration is not None and motor_id in calibration.motors:
                position = f"{calibration.joint_from_counts([motor_id], [counts])[0]:+.3f} rad"
            else:
                position = f"{counts} counts"
            problem = None
            if model is None:
                problem = f"unsupported model number {model_number}"
            elif error_status:
                problem = f"hardware error: {describe_hardware_error(error_status)} (reboot it)"
            reports.append(
                MotorReport(
                    motor_id, name, read("firmware_version"), read("present_temperature"),
                    read("present_input_voltage") * VOLT_PER_COUNT, error_status, position, problem,
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
            f"{cell(r.voltage_v, '.1f'):>6} {cell(r.error_status, '#04x'):>5}  {r.position:<14} {r.problem or 'ok'}"
        )
    return "\n".join(lines)
