"""Joint calibration: how each servo's position maps onto its joint angle.

joint_rad = direction * scale * motor_rad + offset_rad, with motor_rad = count * 2pi/4096.
(ROBEL's convention, qpos = qpos_motor * scale + offset, with a direction for a horn mounted the
other way round.) The offsets depend on how the horns were mounted, so they live in a YAML file
that `slac-robot calibrate-joints` writes and the driver reads; they are never in code.
"""

from __future__ import annotations

import datetime
import math
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np
import yaml

from slac_robot.hardware.control_table import RAD_PER_COUNT

if TYPE_CHECKING:
    from slac_robot.hardware.bus import DynamixelBus

# ROBEL's nominal calibration of a D'Claw with its valve station, shipped with the package.
NOMINAL_FILE = pathlib.Path(__file__).with_name("robel_dclaw_joints.yaml")
RECALIBRATE = "run `slac-robot calibrate-joints` to write it"


class CalibrationError(ValueError):
    """A calibration file is missing, unreadable or incomplete; the message says how to fix it."""


@dataclass(frozen=True)
class MotorCalibration:
    offset_rad: float
    scale: float = 1.0
    direction: int = 1


class JointCalibration:
    """Per-motor offset, scale and direction, keyed by Dynamixel ID."""

    def __init__(self, motors: Mapping[int, MotorCalibration]):
        self.motors = dict(motors)

    def __getitem__(self, motor_id: int) -> MotorCalibration:
        return self.motors[motor_id]

    def require(self, motor_ids: Iterable[int], source: str = "the calibration") -> None:
        """Raises CalibrationError when any of motor_ids has no entry."""
        missing = [i for i in motor_ids if i not in self.motors]
        if missing:
            raise CalibrationError(f"{source} has no entry for motor(s) {missing}; {RECALIBRATE}")

    def _arrays(self, motor_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        entries = [self.motors[i] for i in motor_ids]
        gain = np.array([m.direction * m.scale for m in entries])
        offset = np.array([m.offset_rad for m in entries])
        return gain, offset

    def joint_from_counts(self, motor_ids: Iterable[int], counts: np.ndarray) -> np.ndarray:
        """Joint angles (rad) from Present Position counts, one per motor id."""
        gain, offset = self._arrays(motor_ids)
        return gain * np.asarray(counts, dtype=float) * RAD_PER_COUNT + offset

    def counts_from_joint(self, motor_ids: Iterable[int], joint_rad: np.ndarray) -> np.ndarray:
        """Goal Position counts (int64, rounded) for joint angles (rad)."""
        gain, offset = self._arrays(motor_ids)
        return np.rint((np.asarray(joint_rad, dtype=float) - offset) / gain / RAD_PER_COUNT).astype(np.int64)

    def joint_rate(self, motor_ids: Iterable[int], motor_rate: np.ndarray) -> np.ndarray:
        """Joint-side rate from a motor-side rate (velocity, or signed current)."""
        gain, _ = self._arrays(motor_ids)
        return gain * np.asarray(motor_rate, dtype=float)

    @classmethod
    def from_reference(
        cls,
        motor_ids: Iterable[int],
        counts: np.ndarray,
        reference_rad: np.ndarray,
        previous: "JointCalibration",
    ) -> "JointCalibration":
        """The calibration in which motors reading `counts` are at `reference_rad`.

        Scale and direction are kept from `previous`; only the offsets are recorded."""
        motors = dict(previous.motors)
        for motor_id, count, ref in zip(motor_ids, counts, reference_rad):
            old = previous[motor_id]
            offset = float(ref) - old.direction * old.scale * float(count) * RAD_PER_COUNT
            motors[motor_id] = MotorCalibration(offset, old.scale, old.direction)
        return cls(motors)

    # -- files ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | pathlib.Path) -> "JointCalibration":
        """Reads a calibration file; raises CalibrationError naming the file and the fix."""
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise CalibrationError(f"joint calibration file {path} does not exist; {RECALIBRATE}")
        try:
            content = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            first = str(error).splitlines()[0]
            raise CalibrationError(f"joint calibration file {path} is not valid YAML ({first}); {RECALIBRATE} again") from None
        motors_in = content.get("motors") if isinstance(content, dict) else None
        if not isinstance(motors_in, dict) or not motors_in:
            raise CalibrationError(f"joint calibration file {path} has no `motors:` table; {RECALIBRATE} again")
        motors = {}
        for key, entry in motors_in.items():
            where = f"joint calibration file {path}, motor {key}"
            if not isinstance(key, int) or not isinstance(entry, dict) or "offset_rad" not in entry:
                raise CalibrationError(f"{where}: expected `ID: {{offset_rad: ..., scale: ..., direction: ...}}`; {RECALIBRATE} again")
            offset, scale, direction = entry["offset_rad"], entry.get("scale", 1.0), entry.get("direction", 1)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (offset, scale)) or not math.isfinite(offset) or not scale > 0:
                raise CalibrationError(f"{where}: offset_rad must be a number and scale a number > 0; {RECALIBRATE} again")
            if direction not in (1, -1):
                raise CalibrationError(f"{where}: direction must be 1 or -1, got {direction!r}; fix the file or {RECALIBRATE} again")
            motors[key] = MotorCalibration(float(offset), float(scale), int(direction))
        return cls(motors)

    def save(self, path: str | pathlib.Path, note: str = "") -> pathlib.Path:
        """Writes the calibration atomically (a crash never leaves half a file); returns the path."""
        path = pathlib.Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        header = [
            "# D'Claw joint calibration: joint_rad = direction * scale * count * 2pi/4096 + offset_rad",
            f"# written {datetime.datetime.now().isoformat(timespec='seconds')}" + (f"; {note}" if note else ""),
        ]
        body = {
            "motors": {
                int(i): {"offset_rad": round(float(m.offset_rad), 6), "scale": float(m.scale), "direction": int(m.direction)}
                for i, m in sorted(self.motors.items())
            }
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False))
        tmp.replace(path)
        return path


def measure_offsets(
    bus: "DynamixelBus",
    motor_ids: Iterable[int],
    reference_rad: np.ndarray,
    previous: JointCalibration,
    samples: int,
    max_spread_rad: float,
) -> JointCalibration:
    """Reads the motors' positions while the claw is held at `reference_rad` and returns the
    calibration that maps them there (scale and direction kept from `previous`).

    The torque must already be off. Raises CalibrationError when the readings spread more than
    max_spread_rad over the samples (the claw moved while it was measured)."""
    from slac_robot.hardware.control_table import REG

    ids = list(motor_ids)
    position = REG["present_position"]
    readings = np.array(
        [
            [int.from_bytes(r, "little", signed=True) for r in bus.sync_read(ids, position.address, position.size)]
            for _ in range(samples)
        ]
    )
    spread_rad = (readings.max(axis=0) - readings.min(axis=0)) * RAD_PER_COUNT
    if spread_rad.max() > max_spread_rad:
        moving = [i for i, s in zip(ids, spread_rad) if s > max_spread_rad]
        raise CalibrationError(
            f"motor(s) {moving} moved by up to {spread_rad.max():.3f} rad while being measured; hold the claw "
            "still at the reference pose and run `slac-robot calibrate-joints` again"
        )
    counts = np.rint(readings.mean(axis=0))
    return JointCalibration.from_reference(ids, counts, reference_rad, previous)
