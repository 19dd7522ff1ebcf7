"""Intel RealSense (D400 series) colour camera, with optional depth aligned to colour.

One librealsense pipeline streams the colour (and depth) of the device with the configured
serial; `pipeline.set_device` pins it to that device. Which devices exist is asked of a
`devices` function: by default the connected hardware; a test passes librealsense's own
software device there, whose frames take the same path through the pipeline as a camera's.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyrealsense2 as rs

from slac_robot.config import ConfigError
from slac_robot.hardware.cameras.image import ImageSettings
from slac_robot.hardware.cameras.stream import Capture, StreamingCamera
from slac_robot.interfaces import CameraError

log = logging.getLogger(__name__)

# How often a reconnect looks for the device again while it re-enumerates after a reset, and
# the pause after a reconnect that failed.
DEVICE_POLL_S = 0.5


def connected_devices() -> list[rs.device]:
    """The RealSense devices connected now (a fresh query: re-enumerated devices show up)."""
    return list(rs.context().query_devices())


def serial_of(device: rs.device) -> str:
    return device.get_info(rs.camera_info.serial_number)


def find_device(devices: Sequence[rs.device], serial: str | None) -> rs.device:
    """The device with `serial` (None: the only device). Raises CameraError listing the serials
    found when there is none, several without a serial chosen, or none with that serial."""
    serials = [serial_of(d) for d in devices]
    if not devices:
        raise CameraError(
            "no RealSense device connected; plug the camera into a USB 3 port "
            "(`rs-enumerate-devices` or `lsusb` should list it) and try again"
        )
    if serial is None:
        if len(devices) > 1:
            raise CameraError(
                f"{len(devices)} RealSense devices are connected ({', '.join(serials)}); "
                "choose one with camera_device.serial"
            )
        return devices[0]
    if serial not in serials:
        raise CameraError(
            f"no RealSense device with serial {serial!r}; connected: {', '.join(serials)}. "
            "Set camera_device.serial to one of them"
        )
    return devices[serials.index(serial)]


class RealSenseCamera(StreamingCamera):
    """A RealSense colour stream (rgb8) behind the Camera interface (see StreamingCamera).

    image: the agent image settings (size, region, calibration).
    serial: the device's serial number; None: the only connected device.
    width_px, height_px, fps: the colour stream mode (one the device offers).
    depth: also stream depth, aligned to the colour image (Frame.depth_m, metres).
    color_options: colour sensor options by librealsense name (rs.option), e.g.
        {"enable_auto_exposure": 0, "exposure": 150}; set before streaming starts.
    warmup_frames, max_reconnects: see StreamingCamera.
    frame_timeout_s: no frame for this long and the camera counts as lost (and is reconnected).
    reconnect_timeout_s: how long a reconnect waits for the device to come back after its
        hardware reset.
    devices: returns the devices to choose from (default: connected_devices).
    """

    def __init__(
        self,
        image: ImageSettings,
        serial: str | None = None,
        width_px: int = 640,
        height_px: int = 480,
        fps: int = 30,
        depth: bool = False,
        color_options: Mapping[str, float] | None = None,
        warmup_frames: int = 30,
        frame_timeout_s: float = 1.0,
        max_reconnects: int = 3,
        reconnect_timeout_s: float = 10.0,
        devices: Callable[[], Sequence[rs.device]] = connected_devices,
    ):
        self._serial = serial
        self._mode = (width_px, height_px, fps)
        self._depth = depth
        self._color_options = dict(color_options or {})
        self._reconnect_timeout_s = reconnect_timeout_s
        self._devices = devices
        self._device: rs.device | None = None
        self._pipe: rs.pipeline | None = None
        self._align = rs.align(rs.stream.color) if depth else None
        device = find_device(devices(), serial)
        self._frame_timeout_s = frame_timeout_s
        super().__init__(f"RealSense {serial_of(device)}", image, warmup_frames, max_reconnects, DEVICE_POLL_S)
        self._start()

    def _open(self) -> tuple[int, int]:
        device = find_device(self._devices(), self._serial)
        width_px, height_px, fps = self._mode
        color_sensor = _sensor_streaming(device, rs.stream.color)
        _check_mode(color_sensor, rs.stream.color, rs.format.rgb8, width_px, height_px, fps)
        _set_options(color_sensor, self._color_options)
        config = rs.config()
        config.enable_stream(rs.stream.color, width_px, height_px, rs.format.rgb8, fps)
        if self._depth:
            depth_sensor = _sensor_streaming(device, rs.stream.depth)
            _check_mode(depth_sensor, rs.stream.depth, rs.format.z16, width_px, height_px, fps)
            config.enable_stream(rs.stream.depth, width_px, height_px, rs.format.z16, fps)
        pipe = rs.pipeline()
        pipe.set_device(device)
        pipe.start(config)
        self._device, self._pipe = device, pipe
        return width_px, height_px

    def _grab(self) -> Capture:
        if self._pipe is None:
            raise RuntimeError("not streaming")
        deadline_s = time.monotonic() + self._frame_timeout_s
        while True:
            timeout_ms = max(1, int((deadline_s - time.monotonic()) * 1000))
            frames = self._pipe.wait_for_frames(timeout_ms)  # RuntimeError when none comes in time
            if self._align is not None:
                frames = self._align.process(frames)
            color = frames.get_color_frame()
            depth = frames.get_depth_frame() if self._depth else None
            if color and (depth or not self._depth):
                break
            if time.monotonic() > deadline_s:  # frames keep arriving incomplete
                raise RuntimeError(f"no complete colour{' and depth' if self._depth else ''} frame set within {self._frame_timeout_s} s")
        depth_m = None
        if depth:
            depth_m = np.asanyarray(depth.get_data()).astype(np.float32) * np.float32(depth.get_units())
        return Capture(
            image=np.array(np.asanyarray(color.get_data()), copy=True),
            depth_m=depth_m,
            device_stamp_s=color.get_timestamp() / 1000.0,
            device_clock=color.get_frame_timestamp_domain().name,
        )

    def _release(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                pipe.stop()
            except RuntimeError:  # already stopped, or the device is gone
                pass

    def _recover(self) -> None:
        """Resets the device (it re-enumerates, which clears most USB troubles) and reopens it."""
        if self._device is not None:
            try:
                self._device.hardware_reset()
            except RuntimeError as error:  # e.g. a device that cannot be reset, or is gone
                log.info("%s: no hardware reset (%s)", self.name, error)
        deadline_s = time.monotonic() + self._reconnect_timeout_s
        while True:
            try:
                self._open()
                return
            except (RuntimeError, CameraError):  # not back yet (rs errors are RuntimeErrors)
                if time.monotonic() > deadline_s or self._stop.wait(DEVICE_POLL_S):
                    raise


def _sensor_streaming(device: rs.device, stream: rs.stream) -> rs.sensor:
    """The device's sensor that offers `stream` (colour or depth)."""
    for sensor in device.query_sensors():
        if any(p.stream_type() == stream for p in sensor.get_stream_profiles()):
            return sensor
    raise CameraError(f"RealSense {serial_of(device)} has no {stream.name} stream")


def _check_mode(sensor: rs.sensor, stream: rs.stream, fmt: rs.format, width_px: int, height_px: int, fps: int) -> None:
    modes = sorted(
        {
            (p.as_video_stream_profile().width(), p.as_video_stream_profile().height(), p.fps())
            for p in sensor.get_stream_profiles()
            if p.stream_type() == stream and p.format() == fmt and p.is_video_stream_profile()
        }
    )
    if (width_px, height_px, fps) not in modes:
        offered = ", ".join(f"{w}x{h}@{f}" for w, h, f in modes) or "none"
        raise ConfigError(
            f"the RealSense {stream.name} stream has no {fmt.name} mode {width_px}x{height_px}@{fps}; "
            f"choose camera_device width_px, height_px, fps among: {offered}"
        )


def _set_options(sensor: rs.sensor, options: Mapping[str, Any]) -> None:
    for name, value in options.items():
        option = getattr(rs.option, name, None)
        if not isinstance(option, rs.option) or not sensor.supports(option):
            supported = ", ".join(sorted(o.name for o in sensor.get_supported_options()))
            raise ConfigError(
                f"camera_device.color_options.{name}: the colour sensor has no such option; "
                f"it supports: {supported or 'none'}"
            )
        limits = sensor.get_option_range(option)
        valid = f"a number in [{limits.min:g}, {limits.max:g}] in steps of {limits.step:g}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not limits.min <= value <= limits.max:
            raise ConfigError(f"camera_device.color_options.{name} must be {valid}, got {value!r}")
        try:
            sensor.set_option(option, float(value))
        except RuntimeError as error:  # e.g. off the option's steps
            raise ConfigError(f"camera_device.color_options.{name}={value!r} was refused ({error}); use {valid}") from None
