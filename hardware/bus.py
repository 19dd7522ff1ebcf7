"""The Dynamixel bus over dynamixel-sdk: transactions with bounded retries and typed errors.

`DynamixelBus` owns the serial port. Each transaction (ping, read, write, sync read, sync
write, reboot, clear) either returns its result or raises one of `slac_robot.hardware.errors`:
a timeout or a corrupt status packet is retried `retries` times, after draining the line (a
late reply must never be taken for the answer to the retry), then raised; a status packet with
the Alert bit makes the bus read Hardware Error Status and raise `MotorHardwareError`; a serial
error (USB unplugged) raises `PortVanished`.
"""

from __future__ import annotations

import os
import pathlib
import select
import termios
import time
import warnings
from typing import Iterable

import dynamixel_sdk as sdk
import serial

from slac_robot.hardware.control_table import REG
from slac_robot.hardware.errors import (
    BusTimeout,
    CorruptPacket,
    DynamixelError,
    MotorHardwareError,
    MotorRejected,
    PortNotFound,
    PortVanished,
)

ALERT_BIT = 0x80
# What a serial port raises when its device goes away (termios.error: flushing a dead pty or tty).
_PORT_ERRORS = (serial.SerialException, OSError, termios.error)
SYSFS_USB_SERIAL = pathlib.Path("/sys/bus/usb-serial/devices")
UDEV_RULE = pathlib.Path(__file__).with_name("99-dynamixel-ftdi-latency.rules")


class _Port(sdk.PortHandler):
    """The SDK's PortHandler with three changes that the control loop needs:

    - it counts the bytes written and read (bus statistics; the lockstep clock of the emulated
      backend waits for the emulator to have handled every byte written);
    - while no byte has arrived it waits in select() instead of spinning, so the driver's CPU
      time per tick stays far below the wire time;
    - the reply timeout uses the configured latency timer (the SDK assumes FTDI's factory 16 ms).
    """

    def __init__(self, path: str, latency_timer_s: float, timeout_margin_s: float):
        super().__init__(path)
        self.bytes_written = 0
        self.bytes_read = 0
        self._latency_ms = latency_timer_s * 1000.0
        self._margin_ms = timeout_margin_s * 1000.0

    def writePort(self, packet):
        written = self.ser.write(packet)
        self.bytes_written += written
        return written

    def readPort(self, length):
        data = self.ser.read(length)
        if not data:
            left_ms = self.packet_timeout - self.getTimeSinceStart()
            if left_ms > 0:
                select.select([self.ser.fileno()], [], [], left_ms / 1000.0)
                data = self.ser.read(length)
        self.bytes_read += len(data)
        return data

    def setPacketTimeout(self, packet_length):
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * packet_length + 2.0 * self._latency_ms + self._margin_ms


class DynamixelBus:
    """A Protocol 2.0 bus on a serial port (a U2D2, or the emulator's pseudo-terminal).

    port: the device path, e.g. /dev/ttyUSB0 (better: /dev/serial/by-id/...).
    baud_rate: the servos' baud rate (1 Mbps for the D'Claw).
    retries: how many times a failed transaction is repeated before its error is raised.
    latency_timer_s: the USB adapter's latency timer (FTDI: set to 1 ms, see the udev rule).
    timeout_margin_s: added to the reply timeout beyond wire time and latency.
    drain_s: after a failed transaction, how long the line is listened to and discarded before
        the retry, so that a late reply is never taken for the answer to the retry (a reply is
        late, e.g., when the adapter's latency timer is 16 ms instead of 1 ms).
    """

    def __init__(
        self,
        port: str,
        baud_rate: int = 1_000_000,
        retries: int = 2,
        latency_timer_s: float = 0.001,
        timeout_margin_s: float = 0.002,
        drain_s: float = 0.03,
    ):
        self.path = str(port)
        self.drain_s = drain_s
        self.retries = retries
        self.retried = 0  # transactions repeated after a timeout or corrupt packet, in all
        self.transactions = 0
        # The longest time between two instruction packets (the start of two transaction tries)
        # since this was last set to 0: the servos' Bus Watchdog fires on such a gap, so the
        # driver checks register 98 when it grows long and sets it back to 0 after each check.
        self.longest_quiet_s = 0.0
        self._last_sent_s: float | None = None
        self._missing: int | None = None  # the motor whose status packet was missing last
        if not os.path.exists(self.path):
            raise PortNotFound(
                f"serial port {self.path} does not exist; plug in the U2D2 and set backend.port "
                "(ls /dev/serial/by-id/ lists the adapters)"
            )
        self._port = _Port(self.path, latency_timer_s, timeout_margin_s)
        self._packets = sdk.PacketHandler(2.0)
        try:
            opened = self._port.setBaudRate(baud_rate)
        except _PORT_ERRORS as error:
            raise PortNotFound(
                f"cannot open serial port {self.path} ({error}); check the path and that you are in the "
                "`dialout` group (sudo usermod -aG dialout $USER, then log in again)"
            ) from None
        if not opened:
            raise PortNotFound(f"baud rate {baud_rate} is not supported by the serial port {self.path}; use 1000000")
        warning = latency_timer_warning(self.path)
        if warning:
            warnings.warn(warning, RuntimeWarning, stacklevel=2)

    # -- statistics ---------------------------------------------------------------------------
    @property
    def bytes_sent(self) -> int:
        return self._port.bytes_written

    @property
    def bytes_received(self) -> int:
        return self._port.bytes_read

    @property
    def is_open(self) -> bool:
        return self._port.is_open

    def close(self) -> None:
        if self._port.is_open:
            try:
                self._port.closePort()
            except _PORT_ERRORS:
                pass

    # -- transactions -------------------------------------------------------------------------
    def ping(self, motor_id: int) -> int | None:
        """The model number of motor_id, or None when it does not answer (after the retries)."""

        def attempt():
            model, result, error = self._packets.ping(self._port, motor_id)
            if result == sdk.COMM_SUCCESS:
                self._check_error(motor_id, error, "a ping", alert_ok=True)
            return model, result

        try:
            return self._transact(attempt, f"ping of motor {motor_id}", (motor_id,))
        except BusTimeout:
            return None

    def read(self, motor_id: int, register: str, check_alert: bool = True) -> int:
        """One register's value (signed where the register is); the Alert bit raises if check_alert."""
        reg = REG[register]
        alert_ok = not check_alert or register == "hardware_error_status"

        def attempt():
            data, result, error = self._packets.readTxRx(self._port, motor_id, reg.address, reg.size)
            if result == sdk.COMM_SUCCESS:
                self._check_error(motor_id, error, f"a read of {register}", alert_ok=alert_ok)
            return data, result

        raw = int.from_bytes(bytes(self._transact(attempt, f"read of {register} from motor {motor_id}", (motor_id,))), "little")
        if reg.signed and raw >= 1 << (8 * reg.size - 1):
            raw -= 1 << (8 * reg.size)
        return raw

    def write(self, motor_id: int, register: str, value: int, check_alert: bool = True) -> None:
        """Writes one register and checks the servo's answer (and its Alert bit, if check_alert)."""
        reg = REG[register]
        data = list((int(value) & ((1 << (8 * reg.size)) - 1)).to_bytes(reg.size, "little"))

        def attempt():
            result, error = self._packets.writeTxRx(self._port, motor_id, reg.address, reg.size, data)
            if result == sdk.COMM_SUCCESS:
                self._check_error(motor_id, error, f"a write of {value} to {register}", alert_ok=not check_alert)
            return None, result

        self._transact(attempt, f"write of {register} to motor {motor_id}", (motor_id,))

    def sync_read(self, motor_ids: Iterable[int], address: int, length: int) -> list[bytes]:
        """One SYNC READ of `length` bytes from `address`; returns each motor's bytes, in order."""
        ids = list(motor_ids)

        def attempt():
            result = self._packets.syncReadTx(self._port, address, length, ids, len(ids), False)
            if result != sdk.COMM_SUCCESS:
                return None, result
            replies, errors = [], []
            for motor_id in ids:
                data, result, error = self._packets.readRx(self._port, motor_id, length)
                if result != sdk.COMM_SUCCESS:
                    self._missing = motor_id
                    return None, result
                replies.append(bytes(data))
                errors.append(error)
            for motor_id, error in zip(ids, errors):
                self._check_error(motor_id, error, f"a sync read of {length} bytes at {address}")
            return replies, result

        return self._transact(attempt, f"sync read of {length} bytes at {address} from motors {ids}", tuple(ids))

    def sync_write(self, address: int, size: int, values: dict[int, int]) -> None:
        """One SYNC WRITE of a `size`-byte value per motor (no status packets come back)."""
        mask = (1 << (8 * size)) - 1
        param = []
        for motor_id, value in values.items():
            param.append(motor_id)
            param.extend((int(value) & mask).to_bytes(size, "little"))

        def attempt():
            return None, self._packets.syncWriteTxOnly(self._port, address, size, param, len(param))

        self._transact(attempt, f"sync write at {address}", tuple(values))

    def reboot(self, motor_id: int) -> None:
        """REBOOT: clears a latched hardware error (and the torque); the servo restarts."""

        def attempt():
            result, _ = self._packets.reboot(self._port, motor_id)  # its Alert bit is what a reboot clears
            return None, result

        self._transact(attempt, f"reboot of motor {motor_id}", (motor_id,))

    def clear_multi_turn(self, motor_id: int) -> None:
        """CLEAR: brings Present Position (extended position mode) back within one turn, keeping
        the angle; the servo answers Result Fail (MotorRejected) while its shaft turns."""

        def attempt():
            result, error = self._packets.clearMultiTurn(self._port, motor_id)
            if result == sdk.COMM_SUCCESS:
                self._check_error(motor_id, error, "a clear of its multi-turn count")
            return None, result

        self._transact(attempt, f"clear of the multi-turn count of motor {motor_id}", (motor_id,))

    # -- internals ----------------------------------------------------------------------------
    def _check_error(self, motor_id: int, error: int, what: str, alert_ok: bool = False) -> None:
        if error & 0x7F:
            raise MotorRejected(motor_id, error & 0x7F, what)
        if error & ALERT_BIT and not alert_ok:
            bits = self.read(motor_id, "hardware_error_status")
            raise MotorHardwareError(motor_id, bits)

    def _transact(self, attempt, what: str, motor_ids: tuple[int, ...]):
        """Runs attempt() -> (value, sdk result) up to 1 + retries times; raises a typed error."""
        self._missing = None
        for trial in range(self.retries + 1):
            self.transactions += 1
            self._note_instruction()
            try:
                value, result = attempt()
            except _PORT_ERRORS as error:
                raise PortVanished(
                    f"serial port {self.path} went away during the {what} ({error}); check the USB cable and "
                    "the U2D2, then restart"
                ) from None
            if result == sdk.COMM_SUCCESS:
                return value
            if trial < self.retries:
                self.retried += 1
                self._drain()
        silent = (self._missing,) if self._missing is not None else motor_ids
        if result == sdk.COMM_RX_TIMEOUT:
            raise BusTimeout(
                f"no status packet from motor(s) {list(silent)} for the {what} after {self.retries + 1} tries; "
                "check the power, the cable and the IDs",
                silent,
            )
        if result == sdk.COMM_RX_CORRUPT:
            raise CorruptPacket(
                f"corrupt status packets for the {what} after {self.retries + 1} tries; check the cable, "
                "the baud rate and for two servos with one ID"
            )
        raise DynamixelError(f"the {what} failed: {self._packets.getTxRxResult(result)}")

    def _note_instruction(self) -> None:
        now_s = time.monotonic()
        if self._last_sent_s is not None:
            self.longest_quiet_s = max(self.longest_quiet_s, now_s - self._last_sent_s)
        self._last_sent_s = now_s

    def _drain(self) -> None:
        """Waits out a late or partial reply and discards it, before a retry."""
        try:
            time.sleep(self.drain_s)
            self._port.clearPort()
        except _PORT_ERRORS as error:
            raise PortVanished(f"serial port {self.path} went away ({error}); check the USB cable") from None
        self._port.is_using = False


def latency_timer_warning(port: str, sysfs: pathlib.Path = SYSFS_USB_SERIAL) -> str | None:
    """A warning with the fix when the port's FTDI latency timer is above 1 ms, else None.

    Only USB serial adapters have the sysfs file; other devices (the emulator) get None."""
    name = pathlib.Path(os.path.realpath(port)).name
    timer = sysfs / name / "latency_timer"
    try:
        value_ms = int(timer.read_text().strip())
    except (OSError, ValueError):
        return None
    if value_ms <= 1:
        return None
    return (
        f"the latency timer of {name} is {value_ms} ms, which adds up to {2 * value_ms} ms to every bus transaction; "
        f"set it to 1 ms: echo 1 | sudo tee {timer}, or for good: sudo cp {UDEV_RULE} /etc/udev/rules.d/ "
        "&& sudo udevadm control --reload && sudo udevadm trigger"
    )
