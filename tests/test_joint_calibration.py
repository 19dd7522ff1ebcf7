"""Joint calibration: the file the driver reads, and `slac-robot calibrate-joints` measuring it
on the emulated bus, where the emulated horns are mounted with known offsets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slac_robot.calibration.joints import (
    NOMINAL_FILE,
    CalibrationError,
    JointCalibration,
    MotorCalibration,
)
from slac_robot.cli import main
from slac_robot.hardware.control_table import RAD_PER_COUNT

JOINTS = (10, 11, 12, 20, 21, 22, 30, 31, 32)


def test_nominal_file_holds_robels_offsets():
    nominal = JointCalibration.load(NOMINAL_FILE)
    nominal.require((*JOINTS, 50, 60))
    assert [nominal[i].offset_rad for i in (10, 11, 12)] == pytest.approx([-math.pi / 2, -math.pi, -math.pi], abs=1e-6)


def test_counts_and_joint_angles_are_inverse_with_scale_and_direction():
    calibration = JointCalibration({1: MotorCalibration(0.5, 1.0, -1), 2: MotorCalibration(-3.0, 0.5, 1)})
    joint = np.array([0.3, -0.2])
    counts = calibration.counts_from_joint((1, 2), joint)
    np.testing.assert_allclose(calibration.joint_from_counts((1, 2), counts), joint, atol=RAD_PER_COUNT)
    assert calibration.joint_from_counts((1,), [2048])[0] == pytest.approx(0.5 - math.pi)


def test_save_then_load_round_trips(tmp_path):
    calibration = JointCalibration({10: MotorCalibration(-1.234567, 1.0, -1), 50: MotorCalibration(0.1)})
    path = calibration.save(tmp_path / "sub" / "joints.yaml", note="test")
    loaded = JointCalibration.load(path)
    assert loaded.motors == calibration.motors
    assert not list(tmp_path.glob("sub/*.tmp"))  # written through a temporary file, renamed


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("motors: [1, 2", "not valid YAML"),
        ("something: else\n", "no `motors:` table"),
        ("motors:\n  10: {scale: 1.0}\n", "expected `ID: {offset_rad"),
        ("motors:\n  10: {offset_rad: abc}\n", "offset_rad must be a number"),
        ("motors:\n  10: {offset_rad: 0.1, direction: 2}\n", "direction must be 1 or -1"),
    ],
)
def test_bad_files_get_one_clear_line_with_the_fix(tmp_path, content, message):
    path = tmp_path / "joints.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CalibrationError, match=message) as raised:
        JointCalibration.load(path)
    assert "calibrate-joints" in str(raised.value) and "\n" not in str(raised.value)


def test_a_calibration_without_a_configured_motor_is_refused():
    with pytest.raises(CalibrationError, match=r"motor\(s\) \[60\]"):
        JointCalibration({50: MotorCalibration(0.0)}).require((50, 60))


def test_calibrate_joints_measures_the_emulated_mounting(tmp_path, capsys):
    """The emulated horns are mounted off ROBEL's nominal offsets; the claw is held at a
    reference pose that is not zero; the measured file must give the mounting back."""
    nominal = JointCalibration.load(NOMINAL_FILE)
    shift = dict(zip((*JOINTS, 50, 60), np.linspace(-0.4, 0.4, 11)))
    mounting = JointCalibration(
        {i: MotorCalibration(m.offset_rad + shift[i], m.scale, m.direction) for i, m in nominal.motors.items()}
    )
    mounting_file = mounting.save(tmp_path / "mounting.yaml")
    output = tmp_path / "measured.yaml"
    reference = [0.1, -0.3, 0.4, 0.0, -0.5, 0.6, -0.1, 0.2, 0.3]
    rc = main([
        "calibrate-joints", "backend=emulated", f"backend.emulator.mounting_file={mounting_file}",
        f"reference_pose_rad=[{','.join(map(str, reference))}]", f"output_file={output}", "wait_for_enter=false",
    ])
    assert rc == 0
    assert f"written to {output}" in capsys.readouterr().out
    measured = JointCalibration.load(output)
    for motor_id in (*JOINTS, 50, 60):
        assert measured[motor_id].offset_rad == pytest.approx(mounting[motor_id].offset_rad, abs=RAD_PER_COUNT), motor_id


def test_calibrate_joints_without_an_output_file_says_which_key_to_set(capsys):
    rc = main(["calibrate-joints", "backend=emulated", "wait_for_enter=false"])
    assert rc == 2
    assert "output_file=PATH" in capsys.readouterr().err
