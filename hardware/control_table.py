"""The Dynamixel X-series control table (Protocol 2.0) and per-model units: one table, used by
both the D'Claw driver and the bus emulator.

Addresses, sizes and access come from the ROBOTIS e-manual pages of the XM430/XH430 servos
(see ../shared/design/FACTS.md in the design notes). Addresses below 64 live in EEPROM, which a
servo only lets you write while its torque is off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EEPROM_END = 64  # addresses below this are EEPROM: writable only with torque off
TABLE_SIZE = 147  # the registers up to Present Temperature (146); indirect addresses are not used

COUNTS_PER_TURN = 4096
# Goal Position (116) in the extended position modes: +-256 turns (e-manual, Goal Position). Present
# Position counts on past it, as a 4-byte value, until a CLEAR instruction or a reboot brings it
# back within one turn.
EXTENDED_GOAL_LIMIT_COUNTS = 1_048_575
RAD_PER_COUNT = 2.0 * math.pi / COUNTS_PER_TURN
RPM_PER_VELOCITY_COUNT = 0.229
RAD_S_PER_VELOCITY_COUNT = RPM_PER_VELOCITY_COUNT * 2.0 * math.pi / 60.0
VOLT_PER_COUNT = 0.1
WATCHDOG_S_PER_COUNT = 0.020
RETURN_DELAY_S_PER_COUNT = 2e-6

BROADCAST_ID = 0xFE

# The firmware that brought what the driver relies on: Bus Watchdog (98) from v38 (the e-manual's
# X-series control table), the CLEAR instruction from v42 (its Clear Multi-Turn examples).
WATCHDOG_FIRMWARE = 38
CLEAR_FIRMWARE = 42


@dataclass(frozen=True)
class Register:
    """One control-table entry: address, size in bytes, writable or not, signed or not."""

    name: str
    address: int
    size: int
    writable: bool
    signed: bool = False

    @property
    def eeprom(self) -> bool:
        return self.address < EEPROM_END

    @property
    def end(self) -> int:
        return self.address + self.size


def _r(name: str, address: int, size: int, writable: bool = True, signed: bool = False) -> Register:
    return Register(name, address, size, writable, signed)


REGISTERS: tuple[Register, ...] = (
    _r("model_number", 0, 2, writable=False),
    _r("model_information", 2, 4, writable=False),
    _r("firmware_version", 6, 1, writable=False),
    _r("id", 7, 1),
    _r("baud_rate", 8, 1),
    _r("return_delay_time", 9, 1),
    _r("drive_mode", 10, 1),
    _r("operating_mode", 11, 1),
    _r("secondary_id", 12, 1),
    _r("protocol_type", 13, 1),
    _r("homing_offset", 20, 4, signed=True),
    _r("moving_threshold", 24, 4),
    _r("temperature_limit", 31, 1),
    _r("max_voltage_limit", 32, 2),
    _r("min_voltage_limit", 34, 2),
    _r("pwm_limit", 36, 2),
    _r("current_limit", 38, 2),
    _r("velocity_limit", 44, 4),
    _r("max_position_limit", 48, 4),
    _r("min_position_limit", 52, 4),
    _r("shutdown", 63, 1),
    _r("torque_enable", 64, 1),
    _r("led", 65, 1),
    _r("status_return_level", 68, 1),
    _r("registered_instruction", 69, 1, writable=False),
    _r("hardware_error_status", 70, 1, writable=False),
    _r("velocity_i_gain", 76, 2),
    _r("velocity_p_gain", 78, 2),
    _r("position_d_gain", 80, 2),
    _r("position_i_gain", 82, 2),
    _r("position_p_gain", 84, 2),
    _r("bus_watchdog", 98, 1, signed=True),
    _r("goal_pwm", 100, 2, signed=True),
    _r("goal_current", 102, 2, signed=True),
    _r("goal_velocity", 104, 4, signed=True),
    _r("profile_acceleration", 108, 4),
    _r("profile_velocity", 112, 4),
    _r("goal_position", 116, 4, signed=True),
    _r("realtime_tick", 120, 2, writable=False),
    _r("moving", 122, 1, writable=False),
    _r("moving_status", 123, 1, writable=False),
    _r("present_pwm", 124, 2, writable=False, signed=True),
    _r("present_current", 126, 2, writable=False, signed=True),
    _r("present_velocity", 128, 4, writable=False, signed=True),
    _r("present_position", 132, 4, writable=False, signed=True),
    _r("velocity_trajectory", 136, 4, writable=False, signed=True),
    _r("position_trajectory", 140, 4, writable=False, signed=True),
    _r("present_input_voltage", 144, 2, writable=False),
    _r("present_temperature", 146, 1, writable=False),
)
REG = {r.name: r for r in REGISTERS}

# The per-tick read: Present Current, Velocity and Position are contiguous (126..135).
STATE_BLOCK = (REG["present_current"].address, REG["present_position"].end - REG["present_current"].address)
# The health read: Present Input Voltage and Temperature are contiguous (144..146).
HEALTH_BLOCK = (REG["present_input_voltage"].address, REG["present_temperature"].end - REG["present_input_voltage"].address)

OPERATING_MODES = {"current": 0, "velocity": 1, "position": 3, "extended_position": 4, "current_position": 5, "pwm": 16}

# Hardware Error Status (70) bits, latched until REBOOT.
HARDWARE_ERROR_BITS = {
    0: "input voltage",
    2: "overheating",
    3: "motor encoder",
    4: "electrical shock",
    5: "overload",
}

# Protocol 2.0 baud rate register values.
BAUD_RATES = {9600: 0, 57600: 1, 115200: 2, 1_000_000: 3, 2_000_000: 4, 3_000_000: 5, 4_000_000: 6, 4_500_000: 7}


@dataclass(frozen=True)
class Model:
    """A servo model: its name, Present Current unit, and factory limits."""

    name: str
    number: int
    amp_per_current_count: float


# Model numbers and current units from the ROBOTIS e-manual: XM430 2.69 mA, XH430 1.34 mA.
MODELS: dict[int, Model] = {
    m.number: m
    for m in (
        Model("XH430-W350", 1000, 1.34e-3),
        Model("XH430-W210", 1010, 1.34e-3),
        Model("XM430-W350", 1020, 2.69e-3),
        Model("XM430-W210", 1030, 2.69e-3),
        Model("XH430-V350", 1040, 1.34e-3),
        Model("XH430-V210", 1050, 1.34e-3),
    )
}
MODEL_BY_NAME = {m.name: m for m in MODELS.values()}


def describe_hardware_error(bits: int) -> str:
    """Names the set bits of Hardware Error Status, e.g. "overheating, overload"."""
    names = [name for bit, name in HARDWARE_ERROR_BITS.items() if bits & (1 << bit)]
    unknown = bits & ~sum(1 << b for b in HARDWARE_ERROR_BITS)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02x}")
    return ", ".join(names) or "none"


def to_signed(value: int, size: int) -> int:
    """Reads an unsigned little-endian register value as two's complement."""
    bits = 8 * size
    return value - (1 << bits) if value >= 1 << (bits - 1) else value
