"""Calibration (installed as `slac_robot.calibration`).

- joints.py: joint offsets, scales and directions per motor (the file the D'Claw driver reads);
  robel_dclaw_joints.yaml: ROBEL's nominal offsets;
- intrinsics.py: the intrinsics file (OpenCV YAML) that calibration writes and cameras read;
- boards.py: ChArUco and chessboard boards: corner detection, drawing;
- views.py: which views a calibration keeps (board found, sharp, not a near-duplicate), coverage;
- camera_calibration.py: cv2.calibrateCameraExtended, checks, OpenCV and ROS files;
- collect.py: views from a folder or live from a camera; report.py: the report PNG;
- printing.py: printable boards; extrinsics.py: the camera's pose in the D'Claw base frame.
"""
