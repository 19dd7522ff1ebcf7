"""The bus emulator: Dynamixel Protocol 2.0 servos answering on a pseudo-terminal.

A client (dynamixel-sdk, our driver, any other Dynamixel tool) opens `device_path` as if it were
a U2D2 at /dev/ttyUSB0. A thread reads the master side, parses instruction packets
(`protocol.PacketReader`), runs them against each motor's control table (`motor.EmulatedMotor`)
and writes the status packets back. A `Plant` (the simulated claw, see `sim_plant.py`) puts the
goals into the physics and the physics into the Present registers, under the plant's lock.

Wire time is accounted at the configured baud rate for every transaction: bytes x 10 bits / baud
plus each replying servo's Return Delay Time. With `sleep_wire_time` the emulator also waits that
long before replying, like a real bus; otherwise it only counts (tests, lockstep simulation).

The servos' Bus Watchdog runs in the same thread, on the wall clock: a servo whose torque is on
and whose Bus Watchdog (98) is armed stops, holding where it is, once no instruction packet has
arrived for that long, and refuses new goals until 0 is written there (the e-manual's rules, see
`motor.EmulatedMotor`). Since the emulator outlives its client, this is what stops the claw when
the driver's process is killed.

Faults on request (see the methods under "faults"): a dropped status packet, a bad CRC, a late
reply, a hardware error bit, overheating, a stuck motor, a disconnect.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from dataclasses import dataclass, field
from typing import Protocol

from slac_robot.hardware.control_table import BROADCAST_ID, RETURN_DELAY_S_PER_COUNT
from slac_robot.hardware.emulator.motor import CLEAR_MULTI_TURN, EmulatedMotor
from slac_robot.hardware.emulator.protocol import ErrorNumber, Instruction, Packet, PacketReader, status_packet

BITS_PER_BYTE = 10  # start bit, 8 data bits, stop bit
# The longest the serving thread sleeps when no watchdog is due sooner, so that a servo armed
# from outside the thread (a test setting registers directly) is watched within this delay.
_WATCHDOG_POLL_S = 0.1


class Plant(Protocol):
    """What stands behind the servos: physics that reads goals and produces present values."""

    lock: threading.Lock

    def refresh(self, motors: dict[int, EmulatedMotor]) -> None:
        """Writes the present values (position, velocity, current, ...) into the tables."""

    def apply(self, motors: dict[int, EmulatedMotor]) -> None:
        """Takes goals and torque settings from the tables into the physics."""

    def stick(self, motor_id: int, stuck: bool) -> None:
        """Jams (or frees) what the motor drives: it stays where it is whatever the goal."""


@dataclass
class BusStats:
    """Running totals of the traffic; the benchmark reads differences of two snapshots."""

    instruction_packets: int = 0
    status_packets: int = 0
    bytes_in: int = 0  # client -> servos
    bytes_out: int = 0  # servos -> client
    wire_time_s: float = 0.0

    def copy(self) -> "BusStats":
        return BusStats(**self.__dict__)


@dataclass
class _ReplyFaults:
    """Pending faults on the next status packets; motor_id None means any motor."""

    drop: list[int | None] = field(default_factory=list)
    bad_crc: list[int | None] = field(default_factory=list)
    late: list[float] = field(default_factory=list)


class EmulatorStopped(RuntimeError):
    """The emulator is not running (stopped, or disconnected on request)."""


class BusEmulator:
    """Emulated servos on a pseudo-terminal. Use as a context manager, or start()/stop().

    motors: the servos on the bus, by ID.
    plant: the physics behind them; None holds each servo ideally at its goal.
    baud_rate: the bus speed the wire time is accounted at (the pty itself has no speed).
    sleep_wire_time: also wait the accounted wire time before each reply.
    """

    def __init__(
        self,
        motors: dict[int, EmulatedMotor],
        plant: Plant | None = None,
        baud_rate: int = 1_000_000,
        sleep_wire_time: bool = False,
    ):
        self.motors = dict(sorted(motors.items()))
        self.plant = plant
        self.baud_rate = baud_rate
        self.sleep_wire_time = sleep_wire_time
        self.stats = BusStats()
        self._faults = _ReplyFaults()
        self._reader = PacketReader()
        self._master: int | None = None
        self._slave: int | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._consumed = 0
        self._consumed_changed = threading.Condition()
        self._faults_lock = threading.Lock()
        self._stuck: set[int] = set()
        self._last_instruction_s = time.monotonic()  # when the bus last carried an instruction
        self.device_path = ""

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> "BusEmulator":
        """Opens the pseudo-terminal and starts answering; `device_path` is then set."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo or line editing before a client configures the port
        self.device_path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._last_instruction_s = time.monotonic()
        self._thread = threading.Thread(target=self._serve, name="bus-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the thread and closes the pseudo-terminal."""
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=5.0)
            self._thread = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> "BusEmulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_consumed(self, total_bytes: int, timeout_s: float = 2.0) -> None:
        """Waits until the emulator has read and handled `total_bytes` bytes in all.

        The lockstep simulation calls this before stepping the physics, so that a sync write
        (which gets no reply) has reached the actuators first."""
        deadline = time.monotonic() + timeout_s
        with self._consumed_changed:
            while self._consumed < total_bytes:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    raise EmulatorStopped(
                        f"the bus emulator handled {self._consumed} of the {total_bytes} bytes the driver sent"
                    )
                self._consumed_changed.wait(left)

    # -- faults ---------------------------------------------------------------------------
    def drop_status(self, count: int = 1, motor_id: int | None = None) -> None:
        """The next `count` status packets (from motor_id, or any) are not sent."""
        with self._faults_lock:
            self._faults.drop += [motor_id] * count

    def corrupt_crc(self, count: int = 1, motor_id: int | None = None) -> None:
        """The next `count` status packets (from motor_id, or any) go out with a wrong CRC."""
        with self._faults_lock:
            self._faults.bad_crc += [motor_id] * count

    def delay_replies(self, delay_s: float, count: int = 1) -> None:
        """The replies to the next `count` instructions come `delay_s` late."""
        with self._faults_lock:
            self._faults.late += [delay_s] * count

    def hardware_error(self, motor_id: int, bits: int) -> None:
        """Latches Hardware Error Status bits on one motor (its status packets then carry Alert)."""
        with self._plant_lock():
            self.motors[motor_id].latch_hardware_error(bits)

    def overheat(self, motor_id: int, temperature_c: int) -> None:
        """Heats one motor; above its Temperature Limit it latches the overheating error."""
        with self._plant_lock():
            motor = self.motors[motor_id]
            motor.set("present_temperature", temperature_c)
            self._check_temperature(motor)

    def stick(self, motor_id: int, stuck: bool = True) -> None:
        """Jams one motor's output (a finger caught, a stripped gear): its joint stays at the
        angle it has now whatever the goal, and Present Position keeps reporting that angle
        (Present Current shows the stall). stuck=False frees it."""
        if motor_id not in self.motors:
            raise KeyError(f"no motor {motor_id} on the emulated bus (it has {list(self.motors)})")
        with self._plant_lock():
            self._refresh()  # an ideal servo has reached its last goal by now
            if self.plant is not None:
                self.plant.stick(motor_id, stuck)
            if stuck:
                self._stuck.add(motor_id)
            else:
                self._stuck.discard(motor_id)

    def watchdog_fired(self, motor_id: int) -> bool:
        """Whether the motor's Bus Watchdog fired (and has not been cleared by writing 0)."""
        return self.motors[motor_id].watchdog_fired

    def disconnect(self) -> None:
        """The USB cable is pulled: the pseudo-terminal goes away under the client."""
        self.stop()

    # -- serving --------------------------------------------------------------------------
    def _plant_lock(self):
        return self.plant.lock if self.plant is not None else _NO_LOCK

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([self._master, self._wake_r], [], [], self._watchdog_wait_s())
            if self._wake_r in ready:
                return
            if ready:
                self._receive()
            # Only after reading what has arrived: bytes waiting in the pty are not quiet time.
            self._check_watchdogs()

    def _receive(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError as error:
            if error.errno == errno.EIO:  # no client has the slave open right now
                time.sleep(0.001)
                return
            raise
        for packet in self._reader.feed(data):
            self._handle(packet)
        with self._consumed_changed:
            self._consumed += len(data)
            self._consumed_changed.notify_all()

    def _watchdog_wait_s(self) -> float:
        """How long the serving thread may sleep before the next watchdog could fire."""
        timeouts = [t for motor in self.motors.values() if (t := motor.watchdog_timeout_s) is not None]
        if not timeouts:
            return _WATCHDOG_POLL_S
        due_in_s = self._last_instruction_s + min(timeouts) - time.monotonic()
        return min(_WATCHDOG_POLL_S, max(0.0, due_in_s))

    def _check_watchdogs(self) -> None:
        """Fires the watchdog of every watching servo the bus has been quiet too long for."""
        quiet_s = time.monotonic() - self._last_instruction_s

        def due() -> list[EmulatedMotor]:
            return [m for m in self.motors.values() if (t := m.watchdog_timeout_s) is not None and quiet_s > t]

        if not due():  # the common case, without waiting for the plant's lock
            return
        with self._plant_lock():
            self._refresh()  # stop where the joint is now
            for motor in due():
                motor.fire_watchdog()
            if self.plant is not None:
                self.plant.apply(self.motors)

    def _refresh(self) -> None:
        if self.plant is not None:
            self.plant.refresh(self.motors)
        else:
            self._ideal_refresh()

    def _handle(self, packet: Packet) -> None:
        if packet.crc_ok:  # a packet that arrived garbled does not count as the bus being alive
            self._last_instruction_s = time.monotonic()
        with self._plant_lock():
            self._refresh()
            replies = self._run(packet)
            if self.plant is not None and packet.instruction in _WRITING:
                self.plant.apply(self.motors)
        self.stats.instruction_packets += 1
        self.stats.bytes_in += packet.wire_bytes
        self._send(packet, replies)

    def _send(self, packet: Packet, replies: list[tuple[int, bytes]]) -> None:
        with self._faults_lock:
            late_s = self._faults.late.pop(0) if self._faults.late and replies else 0.0
            out = []
            for motor_id, raw in replies:
                if _take(self._faults.drop, motor_id):
                    continue
                if _take(self._faults.bad_crc, motor_id):
                    raw = raw[:-1] + bytes([raw[-1] ^ 0xFF])
                out.append((motor_id, raw))
        wire_s = (packet.wire_bytes + sum(len(r) for _, r in out)) * BITS_PER_BYTE / self.baud_rate
        wire_s += sum(self.motors[i].get("return_delay_time") * RETURN_DELAY_S_PER_COUNT for i, _ in out)
        self.stats.wire_time_s += wire_s
        self.stats.status_packets += len(out)
        self.stats.bytes_out += sum(len(r) for _, r in out)
        if self.sleep_wire_time:
            time.sleep(wire_s)
        if late_s:
            time.sleep(late_s)
        if out:
            try:
                os.write(self._master, b"".join(r for _, r in out))
            except OSError:
                pass  # the client went away; nothing to answer

    def _ideal_refresh(self) -> None:
        for motor_id, motor in self.motors.items():
            if motor.torque_on and motor_id not in self._stuck:
                motor.set("present_position", motor.get("goal_position"))

    def _check_temperature(self, motor: EmulatedMotor) -> None:
        if motor.get("present_temperature") > motor.get("temperature_limit"):
            motor.latch_hardware_error(1 << 2)

    # -- instructions ---------------------------------------------------------------------
    def _run(self, packet: Packet) -> list[tuple[int, bytes]]:
        """Runs one instruction; returns the (motor id, status packet) replies, in bus order."""
        pid, params = packet.packet_id, packet.params
        targets = list(self.motors) if pid == BROADCAST_ID else [pid] if pid in self.motors else []
        if not packet.crc_ok:
            return [(i, status_packet(i, self.motors[i].error_byte(ErrorNumber.CRC))) for i in targets if pid != BROADCAST_ID]
        inst = packet.instruction
        if inst in _UNICAST_OR_BROADCAST:
            replies = []
            for motor_id in targets:
                motor = self.motors[motor_id]
                # The servo decides to answer, and the Alert bit, before the instruction runs
                # (a REBOOT answers before it clears the error; a write to Status Return Level
                # is answered at the old level).
                answers, latched = self._answers(motor, inst), motor.error_byte()
                error, data = self._unicast(motor, inst, params)
                if answers:
                    replies.append((motor_id, status_packet(motor_id, motor.error_byte(error) | latched, data)))
            if pid == BROADCAST_ID and inst != Instruction.PING:
                return []  # only PING answers a broadcast
            return replies
        if inst == Instruction.SYNC_READ:
            return self._sync_read(params)
        if inst == Instruction.SYNC_WRITE:
            self._sync_write(params)
            return []
        if inst == Instruction.BULK_READ:
            return self._bulk_read(params)
        if inst == Instruction.BULK_WRITE:
            self._bulk_write(params)
            return []
        # An instruction this emulator does not know (as a servo answers one it does not support).
        return [(i, status_packet(i, self.motors[i].error_byte(ErrorNumber.INSTRUCTION))) for i in targets if pid != BROADCAST_ID]

    @staticmethod
    def _answers(motor: EmulatedMotor, inst: int) -> bool:
        """Status Return Level: 0 answers PING only, 1 also READ, 2 everything."""
        level = motor.get("status_return_level")
        return inst == Instruction.PING or level == 2 or (level == 1 and inst == Instruction.READ)

    def _unicast(self, motor: EmulatedMotor, inst: int, params: bytes) -> tuple[ErrorNumber, bytes]:
        if inst == Instruction.PING:
            return ErrorNumber.NONE, motor.read(0, 2)[1] + motor.read(6, 1)[1]  # model number, firmware
        if inst == Instruction.READ:
            if len(params) != 4:
                return ErrorNumber.DATA_LENGTH, b""
            return motor.read(_u16(params, 0), _u16(params, 2))
        if inst in (Instruction.WRITE, Instruction.REG_WRITE):
            if len(params) < 3:
                return ErrorNumber.DATA_LENGTH, b""
            write = motor.write if inst == Instruction.WRITE else motor.register_write
            error = write(_u16(params, 0), params[2:])
            self._check_temperature(motor)
            return error, b""
        if inst == Instruction.ACTION:
            return motor.action(), b""
        if inst == Instruction.REBOOT:
            motor.reboot()
            return ErrorNumber.NONE, b""
        if inst == Instruction.CLEAR:
            if params != CLEAR_MULTI_TURN:
                return ErrorNumber.DATA_RANGE, b""
            return motor.clear_multi_turn(), b""
        return ErrorNumber.INSTRUCTION, b""

    def _sync_read(self, params: bytes) -> list[tuple[int, bytes]]:
        if len(params) < 5:
            return []
        address, length = _u16(params, 0), _u16(params, 2)
        replies = []
        for motor_id in params[4:]:
            motor = self.motors.get(motor_id)
            if motor is None:
                continue  # an absent servo stays silent: the client times out on it
            error, data = motor.read(address, length)
            replies.append((motor_id, status_packet(motor_id, motor.error_byte(error), data)))
        return replies

    def _sync_write(self, params: bytes) -> None:
        if len(params) < 4:
            return
        address, length = _u16(params, 0), _u16(params, 2)
        body = params[4:]
        for start in range(0, len(body) - length, length + 1):
            motor = self.motors.get(body[start])
            if motor is not None:
                motor.write(address, body[start + 1 : start + 1 + length])

    def _bulk_read(self, params: bytes) -> list[tuple[int, bytes]]:
        replies = []
        for start in range(0, len(params) - 4, 5):
            motor_id, address, length = params[start], _u16(params, start + 1), _u16(params, start + 3)
            motor = self.motors.get(motor_id)
            if motor is None:
                continue
            error, data = motor.read(address, length)
            replies.append((motor_id, status_packet(motor_id, motor.error_byte(error), data)))
        return replies

    def _bulk_write(self, params: bytes) -> None:
        start = 0
        while start + 5 <= len(params):
            motor_id, address, length = params[start], _u16(params, start + 1), _u16(params, start + 3)
            data = params[start + 5 : start + 5 + length]
            motor = self.motors.get(motor_id)
            if motor is not None:
                motor.write(address, data)
            start += 5 + length


_UNICAST_OR_BROADCAST = {
    Instruction.PING,
    Instruction.READ,
    Instruction.WRITE,
    Instruction.REG_WRITE,
    Instruction.ACTION,
    Instruction.REBOOT,
    Instruction.CLEAR,
}
_WRITING = {
    Instruction.WRITE,
    Instruction.ACTION,
    Instruction.REBOOT,
    Instruction.CLEAR,  # a servo holding a goal with its torque on now holds it turns away
    Instruction.SYNC_WRITE,
    Instruction.BULK_WRITE,
}


def _u16(data: bytes, at: int) -> int:
    return data[at] | (data[at + 1] << 8)


def _take(pending: list[int | None], motor_id: int) -> bool:
    """Removes and reports the first pending fault that applies to motor_id."""
    for index, target in enumerate(pending):
        if target is None or target == motor_id:
            del pending[index]
            return True
    return False


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


_NO_LOCK = _NoLock()
