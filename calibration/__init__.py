"""Calibration (installed as `slac_robot.calibration`): joint offsets (`joints`, used by the
D'Claw driver); camera intrinsics and extrinsics arrive with the camera issue."""
