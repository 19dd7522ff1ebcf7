"""A librealsense software device: frames injected here travel librealsense's own frame path
(pipeline, syncer, align) into RealSenseCamera, as a camera's would."""

from __future__ import annotations

import threading

import numpy as np
import pyrealsense2 as rs

SERIAL = "000000000042"
FPS = 30
DEPTH_UNITS_M = 0.001


def pattern(index: int, width_px: int, height_px: int) -> np.ndarray:
    """The colour image of frame `index`: gradients that differ from frame to frame."""
    y, x = np.mgrid[0:height_px, 0:width_px]
    return np.stack([(x + index) % 256, (y + 2 * index) % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def depth_pattern(width_px: int, height_px: int) -> np.ndarray:
    """Depth in sensor units: 0.5 m on the left half, 1.5 m on the right half."""
    depth = np.full((height_px, width_px), 500, np.uint16)
    depth[:, width_px // 2 :] = 1500
    return depth


def _intrinsics(width_px: int, height_px: int) -> rs.intrinsics:
    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = width_px, height_px
    intrinsics.fx = intrinsics.fy = 0.9 * width_px
    intrinsics.ppx, intrinsics.ppy = width_px / 2, height_px / 2
    intrinsics.model = rs.distortion.none
    intrinsics.coeffs = [0.0] * 5
    return intrinsics


class SoftwareRealSense:
    """A software device with an rgb8 colour stream (and a z16 depth stream), fed by a thread.

    `devices` is what RealSenseCamera's `devices` argument takes. Frame i carries pattern(i)
    and the device time stamp i / FPS seconds on the hardware clock."""

    def __init__(self, width_px: int = 640, height_px: int = 480, depth: bool = False, serial: str = SERIAL):
        self.size = (width_px, height_px)
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.serial_number, serial)
        self.device.register_info(rs.camera_info.name, "software RealSense")
        self._streams = []
        if depth:
            depth_sensor = self.device.add_sensor("Stereo Module")
            depth_profile = depth_sensor.add_video_stream(self._stream(rs.stream.depth, rs.format.z16, 2, uid=1))
            depth_sensor.add_read_only_option(rs.option.depth_units, DEPTH_UNITS_M)
            self._streams.append((depth_sensor, depth_profile, 2, depth_pattern(width_px, height_px)))
        self.color_sensor = self.device.add_sensor("RGB Camera")
        # pyrealsense2 2.59 hands option_range's last two arguments over swapped: this is
        # min 1, max 10000, step 1, default 156.
        self.color_sensor.add_option(rs.option.exposure, rs.option_range(1, 10000, 156, 1), True)
        color_profile = self.color_sensor.add_video_stream(self._stream(rs.stream.color, rs.format.rgb8, 3, uid=0))
        self._streams.append((self.color_sensor, color_profile, 3, None))
        if depth:
            identity = rs.extrinsics()
            identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
            depth_profile.register_extrinsics_to(color_profile, identity)
        self._index = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stream(self, kind: rs.stream, fmt: rs.format, bytes_per_pixel: int, uid: int) -> rs.video_stream:
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid, stream.fmt = kind, 0, uid, fmt
        stream.width, stream.height = self.size
        stream.fps, stream.bpp = FPS, bytes_per_pixel
        stream.intrinsics = _intrinsics(*self.size)
        return stream

    def devices(self) -> list[rs.device]:
        return [self.device]

    def start(self) -> None:
        """Starts feeding frames at FPS, continuing the frame count."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops feeding (the device stays; a reader sees no new frames)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _feed(self) -> None:
        while not self._stop.is_set():
            index = self._index
            for sensor, profile, bytes_per_pixel, pixels in self._streams:
                frame = rs.software_video_frame()
                frame.pixels = pattern(index, *self.size) if pixels is None else pixels
                frame.stride, frame.bpp = self.size[0] * bytes_per_pixel, bytes_per_pixel
                frame.timestamp = index * 1000.0 / FPS
                frame.domain = rs.timestamp_domain.hardware_clock
                frame.frame_number = index
                frame.profile = profile.as_video_stream_profile()
                if bytes_per_pixel == 2:
                    frame.depth_units = DEPTH_UNITS_M
                sensor.on_video_frame(frame)
            self._index += 1
            self._stop.wait(1.0 / FPS)
