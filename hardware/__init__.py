"""Hardware backends (installed as `slac_robot.hardware`).

The D'Claw driver on dynamixel-sdk, the Dynamixel bus emulator and the RealSense/OpenCV cameras
arrive with their own issues; they implement the interfaces in `slac_robot.interfaces`.
"""
