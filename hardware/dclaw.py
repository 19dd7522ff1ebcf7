"""The D'Claw on Dynamixel servos: the Robot interface over a `DynamixelBus`.

One control tick costs two bus transactions: `read` is one SYNC READ of Present Current,
Velocity and Position (10 bytes from address 126) from the nine joints and the valve servo, and
`command` one SYNC WRITE of the nine Goal Positions. Every `health_period_s` a read also fetches
Hardware Error Status, input voltage and temperature of the joints and Bus Watchdog of every
servo (three more sync reads), and so does the first read after the bus was quiet for half the
watchdog time. Units come from each servo's model (Present Current differs between XM430 and
XH430), joint angles from the joint calibration file. A failed transaction raises (see
`errors.py`); a reading is never reused.

The servos' Bus Watchdog (register 98) stops a servo whose bus stayed quiet longer than
`watchdog_s` with its torque on (a driver killed or paused), and from then on the servo refuses
goals until 0 is written to it. The goals go out by SYNC WRITE, which gets no reply, so the
refusal is silent: the health read raises `WatchdogFired`, and every write of a goal outside
the tick (`set_torque(True)`, `show_goal`, `hold_valve`, `reboot`) clears the watchdog first and
arms it again after; `set_torque(True)` re-arms every servo's.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from slac_robot.calibration.joints import JointCalibration
from slac_robot.hardware.bus import DynamixelBus
from slac_robot.hardware.control_table import (
    CLEAR_FIRMWARE,
    COUNTS_PER_TURN,
    EXTENDED_GOAL_LIMIT_COUNTS,
    HEALTH_BLOCK,
    MODELS,
    OPERATING_MODES,
    RAD_S_PER_VELOCITY_COUNT,
    REG,
    STATE_BLOCK,
    VOLT_PER_COUNT,
    WATCHDOG_FIRMWARE,
    WATCHDOG_S_PER_COUNT,
    to_signed,
)
from slac_robot.hardware.errors import (
    INSTRUCTION_ERROR,
    RESULT_FAIL,
    DynamixelError,
    MotorHardwareError,
    MotorMissing,
    MotorRejected,
    PortVanished,
    WatchdogFired,
)
from slac_robot.interfaces import ControlClock, RobotState

STATE_DTYPE = np.dtype([("current", "<i2"), ("velocity", "<i4"), ("position", "<i4")])
HEALTH_DTYPE = np.dtype([("voltage", "<u2"), ("temperature", "u1")])
POSITION_COUNTS = (0, 4095)  # Min/Max Position Limit range in position mode
WATCHDOG_FIRED = -1  # what Bus Watchdog (98) reads once it fired (e-manual 2.4.27)
# A gap between two packets this long (a fraction of the watchdog time) makes the next read check
# the watchdogs at once: the servos time the quiet on their own clocks, from packets that the USB
# adapter may deliver a little late, so the driver's own measure gets a margin.
SUSPECT_QUIET_FRACTION = 0.5
# The valve servo counts every turn the fingers give the valve, and a reset's Goal Position must stay
# within +-256 turns: past half of that, `hold_valve` clears the count first. The margin lets a
# clear that the servo refuses (the valve still turning) wait for later resets.
VALVE_CLEAR_COUNTS = EXTENDED_GOAL_LIMIT_COUNTS // 2


class DClawRobot:
    """The D'Claw (9 joints), its valve servo and optional guide servo, on one Dynamixel bus.

    bus: the open bus. calibration: per-motor offset/scale/direction (joints, valve, guide).
    clock: the control clock (time stamps of readings and of the health reads).
    joint_ids: the nine joint servos, FF (top, middle, bottom), MF, TH.
    valve_id: the valve servo (torque off, turned by the fingers; `hold_valve` torques it while
        the scripted reset turns the valve).
    guide_id: the servo pointing at the goal, or None.
    joint_lower_rad, joint_upper_rad: written into the servos' position limits on connect.
    health_period_s: how often hardware error status, voltage, temperature and the Bus Watchdogs
        are read (the watchdogs also at the first read after a quiet bus, see above).
    watchdog_s: Bus Watchdog: a servo stops when the bus is quiet this long (0: off).
    release: called after `close` released the port (backend=emulated: stops the emulator).
    """

    def __init__(
        self,
        bus: DynamixelBus,
        calibration: JointCalibration,
        clock: ControlClock,
        joint_ids: tuple[int, ...],
        valve_id: int,
        guide_id: int | None,
        joint_lower_rad: np.ndarray,
        joint_upper_rad: np.ndarray,
        health_period_s: float,
        watchdog_s: float,
        release: Callable[[], None] | None = None,
    ):
        self.bus = bus
        self._release = release
        self.calibration = calibration
        self.clock = clock
        self.joint_ids = tuple(joint_ids)
        self.valve_id = valve_id
        self.guide_id = guide_id
        self._read_ids = (*self.joint_ids, valve_id)
        self._all_ids = tuple(i for i in (*self._read_ids, guide_id) if i is not None)
        calibration.require(self._all_ids, "the joint calibration file")
        self._lower_rad = np.asarray(joint_lower_rad, dtype=float)
        self._upper_rad = np.asarray(joint_upper_rad, dtype=float)
        self._health_period_s = health_period_s
        self._watchdog_s = watchdog_s
        self._watchdog_counts = int(round(watchdog_s / WATCHDOG_S_PER_COUNT))
        self._suspect_quiet_s = SUSPECT_QUIET_FRACTION * watchdog_s if watchdog_s > 0 else math.inf
        self._last_health_s = -math.inf
        self._guide_goal: int | None = None  # the goal show_goal gave the guide, which it keeps
        self._temperature_c = np.zeros(len(self.joint_ids))
        self._voltage_v = np.zeros(len(self.joint_ids))
        self._error_flags = np.zeros(len(self.joint_ids), dtype=np.uint8)
        self.models = self._find_motors()
        self._amp_per_count = np.array([MODELS[self.models[i]].amp_per_current_count for i in self.joint_ids])
        lo, hi = (np.sort(np.stack([self._counts(self._lower_rad), self._counts(self._upper_rad)]), axis=0))
        self._limit_counts = (np.clip(lo, *POSITION_COUNTS), np.clip(hi, *POSITION_COUNTS))
        for motor_id in self._all_ids:
            self._configure(motor_id)
        self.set_torque(True)

    # -- connecting ---------------------------------------------------------------------------
    def _find_motors(self) -> dict[int, int]:
        models, missing, unknown = {}, [], []
        for motor_id in self._all_ids:
            model = self.bus.ping(motor_id)
            if model is None:
                missing.append(motor_id)
            elif model not in MODELS:
                unknown.append(f"{motor_id} (model number {model})")
            else:
                models[motor_id] = model
        if missing:
            raise MotorMissing(
                f"motor(s) {missing} on {self.bus.path} do not answer; check their power, cables and IDs "
                "(`slac-robot check-hardware` lists what answers)"
            )
        if unknown:
            names = ", ".join(m.name for m in MODELS.values())
            raise MotorMissing(f"motor(s) {', '.join(unknown)} are not a supported model ({names})")
        firmware = {motor_id: self.bus.read(motor_id, "firmware_version", check_alert=False) for motor_id in self._all_ids}
        old = [f"{motor_id} (firmware {version})" for motor_id, version in firmware.items() if version < WATCHDOG_FIRMWARE]
        if old:
            raise MotorMissing(
                f"motor(s) {', '.join(old)} predate the Bus Watchdog (firmware {WATCHDOG_FIRMWARE}), which stops the "
                "claw when the driver dies; update them with DYNAMIXEL Wizard 2.0"
            )
        return models

    def _configure(self, motor_id: int) -> None:
        """Torque off, then EEPROM (return delay, mode, limits), then the watchdog."""
        bus = self.bus
        bits = bus.read(motor_id, "hardware_error_status")
        if bits:
            raise MotorHardwareError(motor_id, bits)
        bus.write(motor_id, "torque_enable", 0)
        bus.write(motor_id, "return_delay_time", 0)
        mode = "extended_position" if motor_id == self.valve_id else "position"
        bus.write(motor_id, "operating_mode", OPERATING_MODES[mode])
        if motor_id in self.joint_ids:
            k = self.joint_ids.index(motor_id)
            bus.write(motor_id, "min_position_limit", int(self._limit_counts[0][k]))
            bus.write(motor_id, "max_position_limit", int(self._limit_counts[1][k]))
        bus.write(motor_id, "bus_watchdog", 0)  # clears a watchdog that fired
        bus.write(motor_id, "bus_watchdog", self._watchdog_counts)

    def reboot(self, motor_id: int) -> None:
        """Reboots one motor (clears its latched hardware error) and configures it again."""
        self.bus.reboot(motor_id)
        self._configure(motor_id)
        if motor_id in self.joint_ids or motor_id == self.guide_id:
            self._torque_on(motor_id)

    # -- the Robot interface ------------------------------------------------------------------
    def read(self) -> RobotState:
        replies = self.bus.sync_read(self._read_ids, *STATE_BLOCK)
        stamp_s = self.clock.now_s()
        raw = np.frombuffer(b"".join(replies), dtype=STATE_DTYPE)
        joints, valve = raw[:-1], raw[-1]
        ids = self.joint_ids
        health_due = stamp_s - self._last_health_s >= self._health_period_s
        if health_due or self.bus.longest_quiet_s >= self._suspect_quiet_s:  # a watchdog may have fired
            self._read_health(stamp_s)
        return RobotState(
            joint_pos_rad=self.calibration.joint_from_counts(ids, joints["position"]),
            joint_vel_rad_s=self.calibration.joint_rate(ids, joints["velocity"] * RAD_S_PER_VELOCITY_COUNT),
            joint_current_a=np.abs(joints["current"] * self._amp_per_count),
            joint_temperature_c=self._temperature_c.copy(),
            joint_error_flags=self._error_flags.copy(),
            valve_pos_rad=float(self.calibration.joint_from_counts([self.valve_id], [valve["position"]])[0]),
            stamp_s=stamp_s,
            health_stamp_s=self._last_health_s,
        )

    def _read_health(self, stamp_s: float) -> None:
        """Error bits, voltage and temperature of the joints, and every servo's Bus Watchdog.

        Raises MotorHardwareError for latched error bits, then WatchdogFired for watchdogs that
        read -1 (a servo that stopped and refuses goals: under a policy still running, that is a
        claw that silently stands still)."""
        errors = self.bus.sync_read(self.joint_ids, REG["hardware_error_status"].address, 1)
        health = np.frombuffer(b"".join(self.bus.sync_read(self.joint_ids, *HEALTH_BLOCK)), dtype=HEALTH_DTYPE)
        watchdogs = self.bus.sync_read(self._all_ids, REG["bus_watchdog"].address, 1)
        quiet_s = self.bus.longest_quiet_s  # every gap up to the watchdog read is covered by it
        self.bus.longest_quiet_s = 0.0
        self._error_flags = np.array([e[0] for e in errors], dtype=np.uint8)
        self._temperature_c = health["temperature"].astype(float)
        self._voltage_v = health["voltage"] * VOLT_PER_COUNT
        self._last_health_s = stamp_s
        for motor_id, bits in zip(self.joint_ids, self._error_flags):
            if bits:
                raise MotorHardwareError(motor_id, int(bits))
        fired = tuple(i for i, w in zip(self._all_ids, watchdogs) if to_signed(w[0], 1) == WATCHDOG_FIRED)
        if fired:
            raise WatchdogFired(fired, self._watchdog_s, quiet_s)

    @property
    def voltage_v(self) -> np.ndarray:
        """Each joint servo's input voltage at the last health read."""
        return self._voltage_v.copy()

    def command(self, joint_targets_rad: np.ndarray) -> None:
        counts = np.clip(self._counts(joint_targets_rad), *self._limit_counts)
        self.bus.sync_write(REG["goal_position"].address, 4, dict(zip(self.joint_ids, counts.tolist())))

    def hold_valve(self, valve_rad: float | None) -> None:
        """Turns the valve servo (extended position mode) to valve_rad the short way round and
        holds it there with its torque on; None switches its torque off (the valve turns freely).
        A multi-turn count past VALVE_CLEAR_COUNTS is cleared first."""
        if valve_rad is None:
            self.bus.write(self.valve_id, "torque_enable", 0, check_alert=False)  # the safe direction
            return
        present_counts = self.bus.read(self.valve_id, "present_position")
        if abs(present_counts) > VALVE_CLEAR_COUNTS:
            present_counts = self._clear_valve_turns(present_counts)
        present = float(self.calibration.joint_from_counts([self.valve_id], [present_counts])[0])
        goal = present + math.remainder(valve_rad - present, 2 * math.pi)
        self._rearm_watchdog(self.valve_id, int(self.calibration.counts_from_joint([self.valve_id], [goal])[0]))
        self.bus.write(self.valve_id, "torque_enable", 1)

    def _clear_valve_turns(self, present_counts: int) -> int:
        """Brings the valve servo's count back within one turn (CLEAR, torque off: a torqued servo
        would turn back to its goal, whole turns away); returns Present Position after it. A clear
        refused while the valve turns is left for a later reset, until the goal would not fit; so is
        one that the servo's firmware does not know (before v42), with a warning."""
        self.bus.write(self.valve_id, "torque_enable", 0, check_alert=False)
        try:
            self.bus.clear_multi_turn(self.valve_id)
        except MotorRejected as error:
            if error.error_number not in (RESULT_FAIL, INSTRUCTION_ERROR):
                raise
            turns = f"{present_counts / COUNTS_PER_TURN:+.0f} turns"
            no_clear = (f"its firmware has no CLEAR instruction (firmware {CLEAR_FIRMWARE} or later has it); update "
                        "it with DYNAMIXEL Wizard 2.0")
            if abs(present_counts) + COUNTS_PER_TURN // 2 <= EXTENDED_GOAL_LIMIT_COUNTS:
                if error.error_number == INSTRUCTION_ERROR:
                    warnings.warn(f"the valve servo (motor {self.valve_id}) has counted {turns} and cannot clear "
                                  f"the count: {no_clear}, or power-cycle it before it reaches 256", stacklevel=2)
                return present_counts
            why = ("refused to clear the count because the valve was turning; stop the valve, then restart "
                   "(or power-cycle the valve servo)" if error.error_number == RESULT_FAIL
                   else f"cannot clear the count: {no_clear}, or power-cycle the valve servo")
            raise DynamixelError(
                f"the valve servo (motor {self.valve_id}) has counted {turns}, past the +-256 that a reset's "
                f"Goal Position can reach, and {why}"
            ) from None
        return self.bus.read(self.valve_id, "present_position")

    def show_goal(self, goal_rad: float) -> None:
        if self.guide_id is not None:
            counts = self.calibration.counts_from_joint([self.guide_id], [goal_rad])[0]
            self._guide_goal = int(np.clip(counts, *POSITION_COUNTS))
            self._rearm_watchdog(self.guide_id, self._guide_goal)

    def set_torque(self, enabled: bool) -> None:
        """Switches the joint (and guide) servos' torque on, each holding where it is (the guide:
        pointing at the goal last shown, which it may not have reached with its torque off), or off.

        On also re-arms every servo's Bus Watchdog (cleared, goal set, armed again; the valve's
        too, its torque left as it is), so that the claw moves again after a pause that stopped
        it: the scripted reset starts here. It takes six transactions, all SYNC (a control
        period at 50 Hz is shorter than 11 servos written one by one): four writes, which get no
        status packet, a read of the positions and a read-back of Torque Enable, which raises
        naming any motor whose torque did not come on.
        Off is the safe direction: every motor is written, a motor in hardware error included
        (its Alert bit is not an error here), and the failures are raised together at the end
        as one DynamixelError, so one bad motor cannot leave the others powered."""
        motors = self.joint_ids + ((self.guide_id,) if self.guide_id is not None else ())
        if enabled:
            watched = (*motors, self.valve_id)
            self.bus.sync_write(REG["bus_watchdog"].address, 1, {i: 0 for i in watched})  # a fired one takes goals again
            present = np.frombuffer(b"".join(self.bus.sync_read(motors, REG["present_position"].address, 4)), "<i4")
            goals = {motor_id: self._hold_goal(motor_id, int(counts)) for motor_id, counts in zip(motors, present)}
            self.bus.sync_write(REG["goal_position"].address, 4, goals)
            self.bus.sync_write(REG["bus_watchdog"].address, 1, {i: self._watchdog_counts for i in watched})
            self.bus.sync_write(REG["torque_enable"].address, 1, {i: 1 for i in motors})
            # Read back (it also orders the writes before anything else the bus is asked).
            torque = self.bus.sync_read(motors, REG["torque_enable"].address, 1)
            off = [motor_id for motor_id, reply in zip(motors, torque) if reply[0] != 1]
            if off:
                raise DynamixelError(f"motor(s) {off} did not switch their torque on; check their power and "
                                     "cables (`slac-robot check-hardware`)")
            return
        failures = self._torque_off(motors)
        if failures:
            raise DynamixelError(f"could not switch the torque off: {'; '.join(failures)}")

    def _torque_off(self, motor_ids: tuple[int, ...]) -> list[str]:
        """Torque off on each motor that answers; returns what failed (stops at a vanished port)."""
        failures = []
        for motor_id in motor_ids:
            try:
                self.bus.write(motor_id, "torque_enable", 0, check_alert=False)
            except PortVanished as error:
                failures.append(str(error))
                break
            except DynamixelError as error:
                failures.append(f"motor {motor_id}: {error}")
        return failures

    def _torque_on(self, motor_id: int) -> None:
        """Torque on for one motor, holding where it is (the guide: at the goal last shown)."""
        self._rearm_watchdog(motor_id, self._hold_goal(motor_id, self.bus.read(motor_id, "present_position")))
        self.bus.write(motor_id, "torque_enable", 1)

    def _hold_goal(self, motor_id: int, present_counts: int) -> int:
        """The goal that makes enabling the torque harmless: the present position (a joint's within
        its limits), so the motor does not jump; the guide's, the goal last shown, if any."""
        if motor_id == self.guide_id and self._guide_goal is not None:
            return self._guide_goal
        if motor_id in self.joint_ids:
            k = self.joint_ids.index(motor_id)
            return int(np.clip(present_counts, self._limit_counts[0][k], self._limit_counts[1][k]))
        return present_counts

    def _rearm_watchdog(self, motor_id: int, goal_counts: int | None) -> None:
        """Clears the motor's Bus Watchdog (writing 0: one that fired refuses goals until then),
        writes its goal (None: none), and arms the watchdog again (backend.watchdog_s)."""
        self.bus.write(motor_id, "bus_watchdog", 0)
        if goal_counts is not None:
            self.bus.write(motor_id, "goal_position", goal_counts)
        self.bus.write(motor_id, "bus_watchdog", self._watchdog_counts)

    def close(self) -> None:
        """Torque off on every motor that still answers, then the port is released.

        A motor in error still gets its torque switched off; what fails is reported as a warning
        (closing must go on), and a second close does nothing."""
        if not self.bus.is_open:
            return
        try:
            failures = self._torque_off(self._all_ids)
        finally:
            self.bus.close()
            if self._release is not None:
                self._release()
        if failures:
            warnings.warn(f"could not switch every motor's torque off: {'; '.join(failures)}", RuntimeWarning, stacklevel=2)

    def _counts(self, joint_rad: np.ndarray) -> np.ndarray:
        return self.calibration.counts_from_joint(self.joint_ids, joint_rad)
