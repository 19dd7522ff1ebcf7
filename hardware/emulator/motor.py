"""One emulated X-series servo: its control table with the read-only and EEPROM rules."""

from __future__ import annotations

from slac_robot.hardware.control_table import (
    BAUD_RATES,
    CLEAR_FIRMWARE,
    COUNTS_PER_TURN,
    EEPROM_END,
    EXTENDED_GOAL_LIMIT_COUNTS,
    OPERATING_MODES,
    REG,
    REGISTERS,
    TABLE_SIZE,
    WATCHDOG_S_PER_COUNT,
    Model,
    to_signed,
)
from slac_robot.hardware.emulator.protocol import ALERT_BIT, ErrorNumber

FIRMWARE_VERSION = 46  # past WATCHDOG_FIRMWARE and CLEAR_FIRMWARE
# The registers a fired Bus Watchdog makes read-only (writes get a Data Range Error).
GOAL_REGISTERS = ("goal_pwm", "goal_current", "goal_velocity", "goal_position")
WATCHDOG_FIRED = -1  # what Bus Watchdog (98) reads after it fired
WATCHDOG_MAX_COUNTS = 127
# CLEAR's parameters for "clear the multi-turn count" (Protocol 2.0, Clear 0x10).
CLEAR_MULTI_TURN = bytes([0x01, 0x44, 0x58, 0x4C, 0x22])
EXTENDED_MODES = (OPERATING_MODES["extended_position"], OPERATING_MODES["current_position"])
# Factory values that differ from zero (e-manual, X series).
FACTORY_VALUES = {
    "baud_rate": BAUD_RATES[57600],
    "return_delay_time": 250,
    "operating_mode": OPERATING_MODES["position"],
    "secondary_id": 255,
    "protocol_type": 2,
    "moving_threshold": 10,
    "temperature_limit": 80,
    "max_voltage_limit": 160,
    "min_voltage_limit": 95,
    "pwm_limit": 885,
    "current_limit": 1193,
    "velocity_limit": 200,
    "max_position_limit": 4095,
    "min_position_limit": 0,
    "shutdown": 52,  # overheating, electrical shock, overload drop the torque
    "status_return_level": 2,
    "position_p_gain": 800,
    "velocity_i_gain": 1920,
    "velocity_p_gain": 100,
    "present_input_voltage": 120,
    "present_temperature": 25,
}


class EmulatedMotor:
    """A control table of TABLE_SIZE bytes with the servo's write rules.

    `write` returns the error number a real servo puts in its status packet: Access Error for a
    read-only register or for EEPROM while the torque is on, Data Range Error for values a
    register does not take, Data Length Error for writes that split a register. Hardware errors
    are latched in Hardware Error Status until `reboot`.

    Bus Watchdog (98), after the ROBOTIS e-manual's X-series control table, section 2.4.27
    "Bus Watchdog(98)" (emanual.robotis.com/docs/en/dxl/x/xm430-w210/; the XL430-W250 page has
    the same section): 0 switches it off, 1..127 arms it in 20 ms units, and it only watches
    while the torque is on. Once the bus has been quiet for longer than that (any instruction
    packet counts), the servo stops, the register reads -1, and the Goal registers (PWM, Current,
    Velocity, Position) refuse writes with a Data Range Error until 0 is written to it. The manual
    does not say that the torque drops, so it stays on here: the servo holds where it stopped.
    The bus emulator measures the quiet time (see `watchdog_timeout_s`) and calls `fire_watchdog`.

    Multi-turn count: the plant sets the output shaft's angle and reads the goal, both in shaft
    counts (`sense_shaft`, `shaft_goal_counts`); Present and Goal Position are those counts less the turns
    that CLEAR (`clear_multi_turn`) or a reboot took off, which bring Present Position back within
    one turn (0..4095) where the shaft is.
    """

    def __init__(self, motor_id: int, model: Model, firmware_version: int = FIRMWARE_VERSION):
        self.model = model
        self.firmware_version = firmware_version
        self.table = bytearray(TABLE_SIZE)
        self._registered: tuple[int, bytes] | None = None
        self._cleared_counts = 0  # whole turns taken off the count, in counts
        self._factory(motor_id)

    def _factory(self, motor_id: int) -> None:
        self.table[:] = bytes(TABLE_SIZE)
        self.set("model_number", self.model.number)
        self.set("firmware_version", self.firmware_version)
        self.set("id", motor_id)
        for name, value in FACTORY_VALUES.items():
            self.set(name, value)

    # -- raw access -----------------------------------------------------------------------
    def get(self, name: str) -> int:
        reg = REG[name]
        value = int.from_bytes(self.table[reg.address : reg.end], "little")
        return to_signed(value, reg.size) if reg.signed else value

    def set(self, name: str, value: int) -> None:
        """Sets a register whatever its access (the emulator's physics and faults use this)."""
        reg = REG[name]
        self.table[reg.address : reg.end] = (value & ((1 << (8 * reg.size)) - 1)).to_bytes(reg.size, "little")

    @property
    def motor_id(self) -> int:
        return self.get("id")

    @property
    def torque_on(self) -> bool:
        return self.get("torque_enable") == 1

    @property
    def hardware_error(self) -> int:
        return self.get("hardware_error_status")

    def error_byte(self, error: ErrorNumber | int = ErrorNumber.NONE) -> int:
        """The status packet's error byte: the error number plus the Alert bit when latched."""
        return int(error) | (ALERT_BIT if self.hardware_error else 0)

    @property
    def watchdog_fired(self) -> bool:
        return self.get("bus_watchdog") == WATCHDOG_FIRED

    @property
    def watchdog_timeout_s(self) -> float | None:
        """How long the bus may stay quiet before the watchdog fires; None while it is not watching
        (switched off, already fired, or torque off)."""
        counts = self.get("bus_watchdog")
        return counts * WATCHDOG_S_PER_COUNT if counts > 0 and self.torque_on else None

    def fire_watchdog(self) -> None:
        """The bus went quiet: the servo stops where it is and refuses new goals.

        The emulator's servos run in position modes, so stopping means holding Present Position:
        Goal Position is set to it (the plant then holds the joint there)."""
        self.set("goal_position", self.get("present_position"))
        self.set("bus_watchdog", WATCHDOG_FIRED)

    def latch_hardware_error(self, bits: int) -> None:
        """Sets Hardware Error Status bits; those named in Shutdown drop the torque."""
        self.set("hardware_error_status", self.hardware_error | bits)
        if bits & self.get("shutdown"):
            self.set("torque_enable", 0)

    def reboot(self) -> None:
        """Clears latched errors and the torque, as a power cycle does; EEPROM is kept, and the
        position restarts within one turn."""
        eeprom, present = bytes(self.table[:EEPROM_END]), self.get("present_position")
        self._factory(self.motor_id)
        self.table[:EEPROM_END] = eeprom
        self._registered = None
        self.set("present_position", present)
        self._restart_turn_count()

    # -- the shaft and the multi-turn count ------------------------------------------------
    def sense_shaft(self, shaft_counts: int) -> None:
        """The plant's reading of the output shaft (counts, the turns since power-up included)."""
        self.set("present_position", shaft_counts - self._cleared_counts)

    def shaft_goal_counts(self) -> int:
        """Goal Position as a shaft angle in counts, for the plant."""
        return self.get("goal_position") + self._cleared_counts

    def clear_multi_turn(self) -> ErrorNumber:
        """CLEAR: Present Position back within one turn; refused (Result Fail) while the shaft turns,
        unknown (Instruction Error) to firmware before CLEAR_FIRMWARE."""
        if self.get("firmware_version") < CLEAR_FIRMWARE:
            return ErrorNumber.INSTRUCTION
        if self.get("present_velocity") != 0:
            return ErrorNumber.RESULT_FAIL
        self._restart_turn_count()
        return ErrorNumber.NONE

    def _restart_turn_count(self) -> None:
        present = self.get("present_position")
        whole_turns = present - present % COUNTS_PER_TURN
        self._cleared_counts += whole_turns
        self.set("present_position", present - whole_turns)

    # -- protocol access ------------------------------------------------------------------
    def read(self, address: int, length: int) -> tuple[ErrorNumber, bytes]:
        if length < 1 or address + length > TABLE_SIZE:
            return ErrorNumber.DATA_RANGE, b""
        return ErrorNumber.NONE, bytes(self.table[address : address + length])

    def check_write(self, address: int, data: bytes) -> ErrorNumber:
        """The error a write would get (NONE when the servo accepts it), without writing."""
        end = address + len(data)
        if not data or end > TABLE_SIZE:
            return ErrorNumber.DATA_RANGE
        touched = [r for r in REGISTERS if r.address < end and address < r.end]
        if not touched:
            return ErrorNumber.ACCESS
        if touched[0].address < address or touched[-1].end > end:
            return ErrorNumber.DATA_LENGTH
        for reg in touched:
            if not reg.writable:
                return ErrorNumber.ACCESS
            if reg.eeprom and self.torque_on:
                return ErrorNumber.ACCESS
            raw = int.from_bytes(data[reg.address - address : reg.end - address], "little")
            value = to_signed(raw, reg.size) if reg.signed else raw
            if not self._in_range(reg.name, value, data, address):
                return ErrorNumber.DATA_RANGE
        return ErrorNumber.NONE

    def _in_range(self, name: str, value: int, data: bytes, address: int) -> bool:
        if name in GOAL_REGISTERS and self.watchdog_fired:
            return False  # read-only until the watchdog is cleared
        if name == "bus_watchdog":
            return 0 <= value <= WATCHDOG_MAX_COUNTS
        if name == "torque_enable":
            return value in (0, 1) and not (value == 1 and self.hardware_error)
        if name == "operating_mode":
            return value in OPERATING_MODES.values()
        if name == "baud_rate":
            return value in BAUD_RATES.values()
        if name == "id":
            return 0 <= value <= 252
        if name == "status_return_level":
            return value in (0, 1, 2)
        if name == "goal_position" and self.get("operating_mode") == OPERATING_MODES["position"]:
            return self.get("min_position_limit") <= value <= self.get("max_position_limit")
        if name == "goal_position" and self.get("operating_mode") in EXTENDED_MODES:
            return abs(value) <= EXTENDED_GOAL_LIMIT_COUNTS
        if name in ("max_position_limit", "min_position_limit"):
            return 0 <= value < 4096
        return True

    def write(self, address: int, data: bytes) -> ErrorNumber:
        error = self.check_write(address, data)
        if error == ErrorNumber.NONE:
            self.table[address : address + len(data)] = data
        return error

    def register_write(self, address: int, data: bytes) -> ErrorNumber:
        """REG_WRITE: checks now, writes on ACTION."""
        error = self.check_write(address, data)
        if error == ErrorNumber.NONE:
            self._registered = (address, bytes(data))
            self.table[REG["registered_instruction"].address] = 1
        return error

    def action(self) -> ErrorNumber:
        """ACTION: performs the registered write, if any."""
        if self._registered is None:
            return ErrorNumber.NONE
        address, data = self._registered
        self._registered = None
        self.table[REG["registered_instruction"].address] = 0
        return self.write(address, data)
