"""RealSenseCamera fed through librealsense's software device (no camera needed)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pyrealsense2 as rs
import pytest

from realsense_software import FPS, SERIAL, SoftwareRealSense, pattern
from slac_robot.config import ConfigError
from slac_robot.hardware.cameras.image import CropRegion, ImageSettings
from slac_robot.hardware.cameras.realsense import RealSenseCamera, connected_devices, find_device
from slac_robot.interfaces import Camera, CameraError, StaleFrameError
from waiting import wait_until


def fresh_frame(camera, after_index: int = -1):
    """The camera's newest frame once it is fresh and newer than after_index."""

    def attempt():
        try:
            frame = camera.read(1.0)
        except StaleFrameError:
            return None
        return frame if frame.index > after_index else None

    return wait_until(attempt, f"a frame after index {after_index}")


def frame_number(frame) -> int:
    """Which injected frame this is, from its device time stamp."""
    return round(frame.device_stamp_s * FPS)


@pytest.fixture
def software():
    device = SoftwareRealSense()
    device.start()
    yield device
    device.stop()


def make_camera(software: SoftwareRealSense, settings=ImageSettings(), **kwargs) -> RealSenseCamera:
    kwargs = {"warmup_frames": 2, "frame_timeout_s": 0.3, "reconnect_timeout_s": 0.5, **kwargs}
    return RealSenseCamera(settings, serial=SERIAL, devices=software.devices, **kwargs)


def test_frames_arrive_bit_exact_with_their_clock_domain(software):
    camera = make_camera(software)
    try:
        assert isinstance(camera, Camera)
        frame = fresh_frame(camera)
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        np.testing.assert_array_equal(frame.image, pattern(frame_number(frame), 640, 480))
        assert frame.device_clock == "hardware_clock"
        assert frame.depth_m is None
        assert 0.0 <= time.monotonic() - frame.stamp_s < 1.0  # stamped on the host's monotonic clock
        later = fresh_frame(camera, frame.index)
        assert later.device_stamp_s > frame.device_stamp_s
    finally:
        camera.close()


def test_region_and_resize_give_the_agent_image(software):
    region = CropRegion(x_px=100, y_px=40, width_px=400, height_px=400)
    camera = make_camera(software, ImageSettings(width_px=64, height_px=64, crop=region))
    try:
        frame = fresh_frame(camera)
        source = pattern(frame_number(frame), 640, 480)[40:440, 100:500]
        np.testing.assert_array_equal(frame.image, cv2.resize(source, (64, 64), interpolation=cv2.INTER_AREA))
    finally:
        camera.close()


def test_depth_arrives_aligned_to_colour_in_metres():
    software = SoftwareRealSense(depth=True)
    software.start()
    camera = make_camera(software, ImageSettings(width_px=64, height_px=48), depth=True)
    try:
        frame = fresh_frame(camera)
        assert frame.depth_m.shape == (48, 64) and frame.depth_m.dtype == np.float32
        # Nearest-neighbour sampling keeps the two surfaces' depths; nothing in between.
        left, right = frame.depth_m[:, 8:24], frame.depth_m[:, 40:56]
        np.testing.assert_allclose(np.median(left), 0.5, atol=1e-4)
        np.testing.assert_allclose(np.median(right), 1.5, atol=1e-4)
        values = np.unique(frame.depth_m[frame.depth_m > 0].round(4))
        assert set(values) <= {0.5, 1.5}
    finally:
        camera.close()
        software.stop()


def test_a_silent_camera_goes_stale_then_reconnects_when_frames_return(software):
    camera = make_camera(software, max_reconnects=100)
    try:
        before = fresh_frame(camera)
        software.stop()
        wait_until(lambda: camera.reconnects >= 1, "a reconnect")
        with pytest.raises(StaleFrameError, match="RealSense 000000000042"):
            camera.read(0.2)
        software.start()
        after = fresh_frame(camera, before.index)
        np.testing.assert_array_equal(after.image, pattern(frame_number(after), 640, 480))
    finally:
        camera.close()


def test_a_camera_that_stays_silent_ends_with_an_error_after_its_reconnects(software):
    camera = make_camera(software, max_reconnects=2)
    try:
        fresh_frame(camera)
        software.stop()

        def failed():
            try:
                camera.read(10.0)
            except CameraError as error:
                return error
            return None

        error = wait_until(failed, "the camera to give up")
        assert "gave up after 2 reconnect attempts" in str(error)
        assert camera.reconnects == 2
    finally:
        camera.close()


def test_colour_options_are_set_on_the_sensor(software):
    camera = make_camera(software, color_options={"exposure": 300})
    try:
        assert software.color_sensor.get_option(rs.option.exposure) == 300
    finally:
        camera.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width_px": 1280, "height_px": 720}, "choose camera_device width_px, height_px, fps among: 640x480@30"),
        ({"color_options": {"gain": 10}}, "has no such option; it supports: exposure"),
        ({"color_options": {"exposure": 0}}, r"exposure must be a number in \[1, 10000\]"),
    ],
)
def test_bad_stream_settings_name_what_the_device_offers(software, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_camera(software, **kwargs)


def test_no_device_or_a_wrong_serial_is_a_clear_error(software):
    with pytest.raises(CameraError, match="no RealSense device connected"):
        find_device([], None)
    with pytest.raises(CameraError, match=r"no RealSense device with serial '123'; connected: 000000000042"):
        find_device(software.devices(), "123")
    assert find_device(software.devices(), None) is software.device


def test_the_default_device_query_asks_librealsense_and_names_a_missing_serial():
    # The real librealsense context: no camera here, or one with another serial elsewhere.
    assert all(isinstance(d, rs.device) for d in connected_devices())
    with pytest.raises(CameraError, match="no RealSense device (connected|with serial 'no-such-serial')"):
        RealSenseCamera(ImageSettings(), serial="no-such-serial")
