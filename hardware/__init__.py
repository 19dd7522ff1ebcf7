"""Hardware backends (installed as `slac_robot.hardware`).

The RealSense and OpenCV cameras are in `cameras/`; the D'Claw driver on dynamixel-sdk and the
Dynamixel bus emulator arrive with their own issue. All implement `slac_robot.interfaces`.
"""
