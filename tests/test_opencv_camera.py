"""OpenCVCamera on image folders and video files that the tests write."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from slac_robot.backends import make_hardware_camera
from slac_robot.config import ConfigError, load_config
from slac_robot.hardware.cameras.image import CropRegion, ImageSettings
from slac_robot.hardware.cameras.opencv_camera import OpenCVCamera
from slac_robot.interfaces import CameraError, StaleFrameError
from waiting import wait_until

FPS = 50.0


def colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of image `index`: distinct for each image."""
    return (10 + 20 * index, 200 - 15 * index, 7 * index)


def write_folder(folder, count: int, size=(64, 48)):
    folder.mkdir()
    for index in range(count):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[:] = colour(index)
        image[: size[1] // 2, : size[0] // 2] = 255  # a bright top-left quarter, to see the region
        cv2.imwrite(str(folder / f"view_{index:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def frames_until_stale(camera, max_age_s: float = 0.5):
    """Every distinct frame the camera hands out until its frames go stale."""
    seen = {}
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            frame = camera.read(max_age_s)
        except StaleFrameError as error:
            return seen, error
        seen[frame.index] = frame
        time.sleep(0.002)
    raise AssertionError("the frames never went stale")


def test_a_folder_plays_in_name_order_then_goes_stale(tmp_path):
    folder = write_folder(tmp_path / "images", 4)
    camera = OpenCVCamera(ImageSettings(), str(folder), fps=FPS)
    try:
        seen, error = frames_until_stale(camera, max_age_s=0.3)
    finally:
        camera.close()
    assert sorted(seen) == [0, 1, 2, 3]
    for index, frame in seen.items():
        assert tuple(frame.image[-1, -1]) == colour(index)  # RGB, as written
    assert "has no more images" in str(error)


def test_a_looping_folder_starts_over(tmp_path):
    folder = write_folder(tmp_path / "images", 2)
    camera = OpenCVCamera(ImageSettings(), str(folder), fps=FPS, loop=True)
    try:
        frame = wait_until(lambda: (f := camera.read(1.0)).index >= 4 and f, "the folder to loop")
        assert tuple(frame.image[-1, -1]) == colour(frame.index % 2)
    finally:
        camera.close()


def test_region_and_resize(tmp_path):
    folder = write_folder(tmp_path / "images", 1, size=(64, 48))
    # The region is the bright top-left quarter: the agent image must be all white.
    settings = ImageSettings(width_px=8, height_px=6, crop=CropRegion(0, 0, 32, 24))
    camera = OpenCVCamera(settings, str(folder), fps=FPS)
    try:
        frame = camera.read(10.0)
    finally:
        camera.close()
    assert frame.image.shape == (6, 8, 3)
    assert (frame.image == 255).all()


def test_a_video_file_plays_with_media_time_then_ends(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    assert writer.isOpened()
    for index in range(5):
        writer.write(np.full((48, 64, 3), colour(index)[::-1], np.uint8))  # BGR
    writer.release()
    camera = OpenCVCamera(ImageSettings(), str(path), fps=FPS)
    try:
        seen, error = frames_until_stale(camera, max_age_s=0.3)
    finally:
        camera.close()
    assert sorted(seen) == [0, 1, 2, 3, 4]
    for index, frame in seen.items():
        # MJPG is lossy: each frame is near its colour, far from its neighbours'
        assert np.abs(frame.image.astype(int) - colour(index)).mean() < 4
        assert frame.device_clock == "media_time"
    stamps = [seen[i].device_stamp_s for i in sorted(seen)]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    assert "has no more frames" in str(error)


def test_a_folder_with_an_image_of_another_size_stops_with_its_name(tmp_path):
    folder = write_folder(tmp_path / "images", 2)
    cv2.imwrite(str(folder / "view_999.png"), np.zeros((10, 10, 3), np.uint8))
    camera = OpenCVCamera(ImageSettings(), str(folder), fps=FPS)
    try:
        error = wait_until(lambda: _error_of(camera), "the camera to fail")
    finally:
        camera.close()
    assert "view_999.png is 10x10 but view_000.png is 64x48" in str(error)


def _error_of(camera):
    try:
        camera.read(10.0)
    except CameraError as error:
        return error
    return None


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing", "does not exist; give a video file, an image folder or a device index"),
        ("empty", "holds no images"),
    ],
)
def test_bad_sources_are_config_errors(tmp_path, source, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=message):
        OpenCVCamera(ImageSettings(), str(tmp_path / source))


def test_a_source_that_ends_during_warm_up_is_a_camera_error(tmp_path):
    folder = write_folder(tmp_path / "images", 2)
    with pytest.raises(CameraError, match="before the warm-up"):
        OpenCVCamera(ImageSettings(), str(folder), fps=FPS, warmup_frames=5)


def test_the_factory_builds_the_configured_camera(tmp_path):
    folder = write_folder(tmp_path / "images", 3, size=(64, 48))
    cfg = load_config(
        "calibrate-camera", ["camera_device=opencv", f"camera_device.source={folder}", "camera_device.warmup_frames=0"]
    )
    device = dict(cfg.camera_device)
    camera = make_hardware_camera(device, {"width_px": 16, "height_px": 16})
    try:
        frame = camera.read(10.0)
        assert frame.image.shape == (16, 16, 3)
        # the default region: the centred 48x48 square of the 64x48 images
        assert camera.pipeline.crop == CropRegion(8, 0, 48, 48)
    finally:
        camera.close()
    with pytest.raises(ConfigError, match="camera_device.crop must be null or"):
        make_hardware_camera({**device, "crop": {"x_px": 0}}, {"width_px": 16, "height_px": 16})
    with pytest.raises(ConfigError, match="calibration file .*missing.yaml does not exist"):
        make_hardware_camera({**device, "calibration_file": str(tmp_path / "missing.yaml")}, {"width_px": 16, "height_px": 16})
