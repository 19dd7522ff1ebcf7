"""Camera calibration end to end: synthetic photos of a board from a known camera, through the
real `slac-robot calibrate-camera` command, back to the known camera."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from slac_robot.calibration.boards import Board, BoardSpec
from slac_robot.calibration.intrinsics import Intrinsics, load_intrinsics
from slac_robot.cli import main
from synthetic_board import BoardCamera, varied_poses

# A 640x480 camera with moderate barrel distortion and an off-centre principal point.
KNOWN = Intrinsics(
    camera_matrix=np.array([[610.0, 0.0, 322.0], [0.0, 605.0, 236.0], [0.0, 0.0, 1.0]]),
    distortion=np.array([-0.12, 0.06, 0.0008, -0.0005, -0.02]),
    width_px=640,
    height_px=480,
)
CHARUCO = BoardSpec("charuco", squares_x=9, squares_y=6, square_mm=25.0, marker_mm=18.0)
CHARUCO_OVERRIDES = ["board.squares_x=9", "board.squares_y=6", "board.square_mm=25.0", "board.marker_mm=18.0"]
NOISE_GREY = 2.0  # pixel noise, standard deviation in grey levels
VIEWS = 24


@pytest.fixture(scope="module")
def charuco_photos(tmp_path_factory):
    """VIEWS synthetic PNG photos of the ChArUco board, taken by the KNOWN camera."""
    folder = tmp_path_factory.mktemp("charuco_photos")
    board = Board(CHARUCO)
    camera = BoardCamera(board, KNOWN, NOISE_GREY)
    for index, (rvec, tvec) in enumerate(varied_poses(board, VIEWS, seed=1)):
        cv2.imwrite(str(folder / f"photo_{index:02d}.png"), camera.photograph(rvec, tvec))
    return folder


def calibrate_command(*overrides: str) -> int:
    return main(["calibrate-camera", *overrides])


def assert_close_to_known(camera_matrix: np.ndarray, tolerance: float = 0.005):
    for name, (row, col) in {"fx": (0, 0), "fy": (1, 1), "cx": (0, 2), "cy": (1, 2)}.items():
        found, true = camera_matrix[row, col], KNOWN.camera_matrix[row, col]
        assert abs(found - true) <= tolerance * true, f"{name} {found:.2f} vs {true:.2f}"


def test_charuco_calibration_recovers_the_known_camera(charuco_photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert calibrate_command(f"images={charuco_photos}", f"out_dir={out}", *CHARUCO_OVERRIDES) == 0
    printed = capsys.readouterr().out
    assert "RMS reprojection error" in printed and "+-" in printed  # RMS and standard deviations
    # The YAML reads in plain OpenCV.
    fs = cv2.FileStorage(str(out / "intrinsics.yaml"), cv2.FILE_STORAGE_READ)
    camera_matrix = fs.getNode("camera_matrix").mat()
    rms_px = fs.getNode("avg_reprojection_error").real()
    per_view = fs.getNode("per_view_reprojection_errors").mat()
    assert (int(fs.getNode("image_width").real()), int(fs.getNode("image_height").real())) == (640, 480)
    assert fs.getNode("distortion_coefficients").mat().size == 5
    assert "charuco 9x6" in fs.getNode("board").string() and fs.getNode("calibration_date").string()
    fs.release()
    assert_close_to_known(camera_matrix)
    assert rms_px < 0.3
    assert per_view.size == VIEWS and (per_view < 0.3).all()
    info = __import__("yaml").safe_load((out / "camera_info.yaml").read_text())
    assert info["distortion_model"] == "plumb_bob"
    np.testing.assert_allclose(np.reshape(info["camera_matrix"]["data"], (3, 3)), camera_matrix)
    assert (out / "report.png").stat().st_size > 10_000
    loaded = load_intrinsics(out / "intrinsics.yaml")
    assert (loaded.width_px, loaded.height_px) == (640, 480)


def test_checkerboard_jpegs_of_another_size_calibrate_too(tmp_path):
    known = Intrinsics(KNOWN.camera_matrix * [[1.25], [1.25], [1]], KNOWN.distortion, 800, 600)
    board = Board(BoardSpec("checkerboard", squares_x=9, squares_y=6, square_mm=22.0))
    camera = BoardCamera(board, known, NOISE_GREY)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, (rvec, tvec) in enumerate(varied_poses(board, 20, seed=3)):
        cv2.imwrite(str(photos / f"IMG_{index:04d}.JPG"), camera.photograph(rvec, tvec), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = tmp_path / "out"
    overrides = ["board=checkerboard", "board.square_mm=22.0", "checks.min_views=8"]
    assert calibrate_command(f"images={photos}", f"out_dir={out}", *overrides) == 0
    found = load_intrinsics(out / "intrinsics.yaml")
    assert (found.width_px, found.height_px) == (800, 600)
    for row, col in ((0, 0), (1, 1), (0, 2), (1, 2)):
        assert abs(found.camera_matrix[row, col] - known.camera_matrix[row, col]) <= 0.005 * known.camera_matrix[row, col]


def test_blurred_and_repeated_views_are_dropped_and_listed(charuco_photos, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = sorted(p.name for p in charuco_photos.iterdir())[:12]
    for name in names:
        (photos / name).write_bytes((charuco_photos / name).read_bytes())
    sharp = cv2.imread(str(charuco_photos / names[0]), cv2.IMREAD_GRAYSCALE)
    # blurred enough to lose a tenth of its sharpness, not so much that the board is lost
    cv2.imwrite(str(photos / "z_blurred.png"), cv2.GaussianBlur(sharp, (0, 0), 1.5))
    shifted = np.roll(sharp, 2, axis=1)  # the same view, 2 px to the side
    cv2.imwrite(str(photos / "z_repeat.png"), shifted)
    cv2.imwrite(str(photos / "z_empty.png"), np.full_like(sharp, 200))
    out = tmp_path / "out"
    sharpness = "selection.min_sharpness=1000"  # the sharp photos score 10^4, the blurred one 500
    assert calibrate_command(f"images={photos}", f"out_dir={out}", sharpness, *CHARUCO_OVERRIDES) == 0
    with open(out / "views.csv", newline="") as f:
        verdicts = {row["image"]: row["verdict"] for row in csv.DictReader(f)}
    assert verdicts["z_blurred.png"] == "blurred"
    assert verdicts["z_repeat.png"] == f"near-duplicate of {names[0]}"
    assert verdicts["z_empty.png"] == "no board found"
    assert all(verdicts[name] == "kept" for name in names)


def test_too_few_views_end_with_advice(charuco_photos, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(charuco_photos.iterdir())[:4]:
        (photos / path.name).write_bytes(path.read_bytes())
    assert calibrate_command(f"images={photos}", f"out_dir={tmp_path / 'out'}", *CHARUCO_OVERRIDES) == 1
    message = capsys.readouterr().err
    assert "only 4 usable views" in message and "at least 10 are needed" in message and "Take more views" in message
    assert not (tmp_path / "out" / "intrinsics.yaml").exists()


def test_an_rms_above_the_threshold_is_refused(charuco_photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert calibrate_command(f"images={charuco_photos}", f"out_dir={out}", "checks.max_rms_px=0.01", *CHARUCO_OVERRIDES) == 1
    message = capsys.readouterr().err
    assert "above checks.max_rms_px=0.01" in message and "Worst views: photo_" in message
    assert not (out / "intrinsics.yaml").exists()
    assert (out / "report.png").exists() and (out / "views.csv").exists()


def test_live_capture_from_a_camera_calibrates(charuco_photos, tmp_path, capsys):
    # The "live" camera is the OpenCV camera playing the photos in a loop.
    out = tmp_path / "out"
    overrides = [
        "camera_device=opencv",
        f"camera_device.source={charuco_photos}",
        "camera_device.fps=20",
        "camera_device.loop=true",
        "camera_device.warmup_frames=0",
        "capture.views=12",
        "capture.interval_s=0.05",
        "capture.timeout_s=20",
        "capture.display=false",
        *CHARUCO_OVERRIDES,
    ]
    assert calibrate_command(f"out_dir={out}", *overrides) == 0
    assert "12/12 kept" in capsys.readouterr().out
    assert len(list((out / "views").glob("capture_*.png"))) == 12
    assert (out / "live_view.png").exists()
    assert_close_to_known(load_intrinsics(out / "intrinsics.yaml").camera_matrix, tolerance=0.01)


def test_a_missing_folder_is_a_config_error(tmp_path, capsys):
    assert calibrate_command(f"images={tmp_path / 'nowhere'}", f"out_dir={tmp_path / 'out'}") == 2
    assert "is not a folder" in capsys.readouterr().err
