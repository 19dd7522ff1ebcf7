"""Hardware backends (installed as `slac_robot.hardware`).

The D'Claw driver on dynamixel-sdk (`dclaw.DClawRobot` over `bus.DynamixelBus`), the one
Dynamixel control table (`control_table`), typed bus errors (`errors`), `check-hardware`
(`check`), the Protocol 2.0 bus emulator (`emulator`) and the RealSense and OpenCV cameras
(`cameras`). All implement the interfaces in `slac_robot.interfaces`.
"""
