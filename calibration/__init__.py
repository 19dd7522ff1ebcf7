"""Calibration (installed as `slac_robot.calibration`): camera intrinsics and extrinsics, joint
offsets. The tools arrive with the camera issue; the sim backend needs no calibration."""
