"""The image pipeline (region, undistortion, resize) and the calibration file it reads."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slac_robot.calibration.intrinsics import (
    CalibrationFileError,
    CalibrationRecord,
    Intrinsics,
    load_intrinsics,
    save_intrinsics,
)
from slac_robot.config import ConfigError
from slac_robot.hardware.cameras.image import CropRegion, ImagePipeline, ImageSettings

WIDTH, HEIGHT = 320, 240
# A lens with visible barrel distortion (a wide webcam), and a slightly off-centre axis.
KNOWN = Intrinsics(
    camera_matrix=np.array([[260.0, 0.0, 163.0], [0.0, 262.0, 118.0], [0.0, 0.0, 1.0]]),
    distortion=np.array([-0.28, 0.09, 0.001, -0.0015, -0.012]),
    width_px=WIDTH,
    height_px=HEIGHT,
)


def scene() -> np.ndarray:
    """What an ideal pinhole camera sees: smooth stripes (interpolation barely changes them)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    red = 127 + 100 * np.sin(x / 9.0)
    green = 127 + 100 * np.sin(y / 7.0)
    blue = 127 + 100 * np.sin((x + y) / 13.0)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def through_the_lens(ideal: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """The image the distorting lens makes of `ideal`: each sensor pixel looks up where its
    ray lands in the ideal image (cv2.undistortPoints inverts the distortion model)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pixels = np.stack([x.ravel(), y.ravel()], axis=-1).reshape(-1, 1, 2)
    ideal_xy = cv2.undistortPoints(
        pixels, intrinsics.camera_matrix, intrinsics.distortion, P=intrinsics.camera_matrix,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-6),
    ).reshape(HEIGHT, WIDTH, 2)
    return cv2.remap(ideal, ideal_xy[..., 0], ideal_xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_undistortion_recovers_the_ideal_image_of_a_known_distortion():
    ideal = scene()
    distorted = through_the_lens(ideal, KNOWN)
    region = CropRegion(40, 30, 240, 180)  # the centre, where the distorted image has content
    undistort = ImagePipeline(ImageSettings(crop=region, intrinsics=KNOWN), WIDTH, HEIGHT)
    plain = ImagePipeline(ImageSettings(crop=region), WIDTH, HEIGHT)
    truth = ideal[30:210, 40:280].astype(float)
    error_corrected = np.abs(undistort.image(distorted) - truth).mean()
    error_raw = np.abs(plain.image(distorted) - truth).mean()
    assert error_corrected < 2.5  # grey levels: two interpolations of smooth stripes
    assert error_raw > 10 * error_corrected


def test_undistorting_a_region_equals_cutting_it_from_the_undistorted_image():
    distorted = through_the_lens(scene(), KNOWN)
    whole = ImagePipeline(ImageSettings(intrinsics=KNOWN), WIDTH, HEIGHT).image(distorted)
    region = CropRegion(100, 50, 120, 90)
    part = ImagePipeline(ImageSettings(crop=region, intrinsics=KNOWN), WIDTH, HEIGHT).image(distorted)
    assert np.abs(part.astype(int) - whole[50:140, 100:220]).max() <= 1


def test_resize_averages_the_region():
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:, ::2] = 200  # one-pixel stripes: averaging gives 100, picking pixels gives 0 or 200
    out = ImagePipeline(ImageSettings(width_px=80, height_px=60), WIDTH, HEIGHT).image(image)
    assert out.shape == (60, 80, 3)
    assert (out == 100).all()


def test_depth_is_resized_without_inventing_values():
    depth = np.full((HEIGHT, WIDTH), 0.4, np.float32)
    depth[:, 161:] = 2.0
    out = ImagePipeline(ImageSettings(width_px=64, height_px=48), WIDTH, HEIGHT).depth(depth)
    assert out.shape == (48, 64)
    assert set(np.unique(out)) == {np.float32(0.4), np.float32(2.0)}


def test_the_default_region_is_the_largest_centred_one_with_the_agent_aspect():
    assert ImagePipeline(ImageSettings(width_px=64, height_px=64), 640, 480).crop == CropRegion(80, 0, 480, 480)
    assert ImagePipeline(ImageSettings(width_px=64, height_px=16), 640, 480).crop == CropRegion(0, 160, 640, 160)
    assert ImagePipeline(ImageSettings(), 640, 480).crop == CropRegion(0, 0, 640, 480)


@pytest.mark.parametrize(
    "settings, message",
    [
        (ImageSettings(64, 64, CropRegion(300, 0, 100, 100)), "leaves the 320x240 camera image"),
        (ImageSettings(64, 64, CropRegion(0, 0, 200, 100)), "would stretch it; e.g. set crop.width_px=100"),
        (ImageSettings(64, 64, intrinsics=Intrinsics(KNOWN.camera_matrix, KNOWN.distortion, 640, 480)),
         "calibration was made on 640x480 images but the camera streams 320x240"),
        (ImageSettings(64, None), "both be set or both be null"),
    ],
)
def test_bad_settings_say_what_to_change(settings, message):
    with pytest.raises(ConfigError, match=message):
        ImagePipeline(settings, WIDTH, HEIGHT)


def test_a_calibration_file_round_trips_and_reads_in_plain_opencv(tmp_path):
    path = tmp_path / "intrinsics.yaml"
    record = CalibrationRecord(0.21, np.array([0.2, 0.22]), np.arange(9.0), ["a.png", "b.png"], "charuco", "2025-01-01")
    save_intrinsics(path, KNOWN, record)
    loaded = load_intrinsics(path)
    np.testing.assert_array_equal(loaded.camera_matrix, KNOWN.camera_matrix)
    np.testing.assert_array_equal(loaded.distortion, KNOWN.distortion)
    assert (loaded.width_px, loaded.height_px) == (WIDTH, HEIGHT)
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    assert fs.getNode("avg_reprojection_error").real() == pytest.approx(0.21)
    assert fs.getNode("distortion_model").string() == "plumb_bob"
    assert [fs.getNode("view_names").at(i).string() for i in range(2)] == ["a.png", "b.png"]
    fs.release()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist; run `slac-robot calibrate-camera`"),
        ("camera_matrix: [1, 2\n", "is not an OpenCV YAML/XML file"),
        ("%YAML:1.0\n---\nimage_width: 640\n", "has no camera_matrix matrix"),
        (
            "%YAML:1.0\n---\ncamera_matrix: !!opencv-matrix\n  rows: 3\n  cols: 3\n  dt: d\n"
            "  data: [0, 0, 320, 0, 500, 240, 0, 0, 1]\ndistortion_coefficients: !!opencv-matrix\n"
            "  rows: 1\n  cols: 5\n  dt: d\n  data: [0, 0, 0, 0, 0]\nimage_width: 640\nimage_height: 480\n",
            "focal lengths fx, fy must be > 0",
        ),
    ],
)
def test_a_missing_or_corrupt_calibration_file_says_so(tmp_path, content, message):
    path = tmp_path / "intrinsics.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CalibrationFileError, match=message):
        load_intrinsics(path)
