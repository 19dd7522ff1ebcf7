"""Hardware cameras behind the Camera interface.

- realsense.py: RealSenseCamera (pyrealsense2), colour with optional aligned depth;
- opencv_camera.py: OpenCVCamera (cv2.VideoCapture: device index, video file; or an image folder);
- stream.py: what both share, a background thread keeping the newest frame, bounded reconnects;
- image.py: the one image pipeline from sensor image to agent image (region, undistort, resize).

Import the camera you need from its module: pyrealsense2 needs libusb, which an OpenCV-only
machine may lack.
"""
