"""Intrinsic calibration: from kept views to camera matrix, distortion, their uncertainties,
and the files people and programs read (OpenCV YAML, ROS camera_info, a report, a listing)."""

from __future__ import annotations

import csv
import pathlib
from dataclasses import dataclass

import cv2
import numpy as np
import yaml

from slac_robot.calibration.intrinsics import DISTORTION_MODELS, CalibrationRecord, Intrinsics, save_intrinsics
from slac_robot.calibration.views import View, ViewSelector

MODEL_FLAGS = {"plumb_bob": 0, "rational_polynomial": cv2.CALIB_RATIONAL_MODEL}
# calibrateCameraExtended's standard deviations come in this order (then thin prism, tilt).
PARAMETER_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")
# How many of the worst views a refusal names.
WORST_VIEWS_NAMED = 3


class CalibrationFailed(RuntimeError):
    """The views do not give a calibration worth using; the message says what to do."""


@dataclass(frozen=True)
class CalibrationResult:
    """intrinsics; rms_px: RMS reprojection error over all corners; per_view_errors_px: each
    view's RMS; std_deviations: one per PARAMETER_NAMES entry in use (fx fy cx cy, then the
    distortion coefficients); residuals_px: per view, (N, 2) detected minus reprojected corners."""

    intrinsics: Intrinsics
    rms_px: float
    per_view_errors_px: np.ndarray
    std_deviations: np.ndarray
    views: list[View]
    residuals_px: list[np.ndarray]

    def parameters(self) -> list[tuple[str, float, float]]:
        """(name, value, standard deviation) of fx, fy, cx, cy and each distortion coefficient."""
        k = self.intrinsics.camera_matrix
        distortion = self.intrinsics.distortion
        # OpenCV orders coefficients k1 k2 p1 p2 k3 k4 k5 k6, as PARAMETER_NAMES[4:].
        values = [k[0, 0], k[1, 1], k[0, 2], k[1, 2], *distortion]
        return [(n, float(v), float(s)) for n, v, s in zip(PARAMETER_NAMES, values, self.std_deviations)]


def require_enough_views(selector: ViewSelector, min_views: int) -> None:
    """Raises CalibrationFailed, saying what views to take, when fewer than min_views were kept."""
    if len(selector.views) >= min_views:
        return
    raise CalibrationFailed(
        f"only {len(selector.views)} usable views ({selector.summary()}); at least {min_views} are needed "
        "(checks.min_views). Take more views: the board at different places in the image (edges and "
        "corners too), distances and tilts up to ~45 degrees, held still, in focus"
    )


def calibrate(views: list[View], image_size_px: tuple[int, int], distortion_model: str) -> CalibrationResult:
    """Runs cv2.calibrateCameraExtended on the views' corners (the board's z = 0 plane).

    distortion_model: a MODEL_FLAGS key (plumb_bob: 5 coefficients, rational_polynomial: 8)."""
    object_points = [v.detection.object_points for v in views]
    image_points = [v.detection.image_points for v in views]
    try:
        rms, matrix, distortion, rvecs, tvecs, std_intrinsics, _, per_view = cv2.calibrateCameraExtended(
            object_points, image_points, image_size_px, None, None, flags=MODEL_FLAGS[distortion_model]
        )
    except cv2.error as error:
        raise CalibrationFailed(
            f"OpenCV could not calibrate from these views ({str(error).strip().splitlines()[-1]}); "
            "take views with the board tilted in different directions, not all face-on"
        ) from None
    distortion = distortion.ravel()
    residuals = []
    for points, found, rvec, tvec in zip(object_points, image_points, rvecs, tvecs):
        projected, _ = cv2.projectPoints(points, rvec, tvec, matrix, distortion)
        residuals.append(found - projected.reshape(-1, 2))
    width, height = image_size_px
    return CalibrationResult(
        intrinsics=Intrinsics(matrix, distortion, width, height),
        rms_px=float(rms),
        per_view_errors_px=per_view.ravel(),
        std_deviations=std_intrinsics.ravel()[: 4 + distortion.size],
        views=list(views),
        residuals_px=residuals,
    )


def check_rms(result: CalibrationResult, max_rms_px: float) -> None:
    """Raises CalibrationFailed naming the worst views when the RMS error exceeds max_rms_px."""
    if result.rms_px <= max_rms_px:
        return
    worst = np.argsort(result.per_view_errors_px)[::-1][:WORST_VIEWS_NAMED]
    named = ", ".join(f"{result.views[i].name} ({result.per_view_errors_px[i]:.2f} px)" for i in worst)
    raise CalibrationFailed(
        f"RMS reprojection error {result.rms_px:.3f} px is above checks.max_rms_px={max_rms_px:g}. "
        f"Worst views: {named}. Remove or retake them; check that the board is flat and rigid, "
        "that board.square_mm is the printed size, and that the images are not scaled or compressed"
    )


def summary_lines(result: CalibrationResult) -> list[str]:
    """The RMS error and each parameter with its standard deviation, for printing."""
    corners = sum(len(v.detection.ids) for v in result.views)
    lines = [f"RMS reprojection error {result.rms_px:.3f} px over {len(result.views)} views ({corners} corners)"]
    lines += [f"  {name:<3} {value:12.5f}  +- {std:.5f}" for name, value, std in result.parameters()]
    return lines


def write_results(out_dir: pathlib.Path, result: CalibrationResult, board: str, date: str, camera_name: str) -> list[pathlib.Path]:
    """Writes intrinsics.yaml (OpenCV) and camera_info.yaml (ROS); returns their paths."""
    record = CalibrationRecord(
        rms_px=result.rms_px,
        per_view_errors_px=result.per_view_errors_px,
        std_deviations=result.std_deviations,
        view_names=[v.name for v in result.views],
        board=board,
        date=date,
    )
    intrinsics_path = out_dir / "intrinsics.yaml"
    save_intrinsics(intrinsics_path, result.intrinsics, record)
    info_path = out_dir / "camera_info.yaml"
    info_path.write_text(yaml.safe_dump(ros_camera_info(result.intrinsics, camera_name), sort_keys=False))
    return [intrinsics_path, info_path]


def ros_camera_info(intrinsics: Intrinsics, camera_name: str) -> dict:
    """The ROS camera_info YAML (camera_calibration_parsers' layout) of a monocular camera."""
    size = (intrinsics.width_px, intrinsics.height_px)
    # P: the camera matrix of the undistorted image; alpha 0 keeps only valid pixels, as ROS does.
    projection, _ = cv2.getOptimalNewCameraMatrix(intrinsics.camera_matrix, intrinsics.distortion, size, 0.0)

    def matrix(values: np.ndarray) -> dict:
        rows, cols = values.shape
        return {"rows": rows, "cols": cols, "data": [float(v) for v in values.ravel()]}

    return {
        "image_width": intrinsics.width_px,
        "image_height": intrinsics.height_px,
        "camera_name": camera_name,
        "camera_matrix": matrix(intrinsics.camera_matrix),
        "distortion_model": DISTORTION_MODELS.get(intrinsics.distortion.size, "plumb_bob"),
        "distortion_coefficients": matrix(intrinsics.distortion.reshape(1, -1)),
        "rectification_matrix": matrix(np.eye(3)),
        "projection_matrix": matrix(np.hstack([projection, np.zeros((3, 1))])),
    }


def write_listing(path: pathlib.Path, selector: ViewSelector, result: CalibrationResult | None) -> None:
    """views.csv: every image considered, kept or why not, its corners, sharpness and error."""
    errors = {} if result is None else {v.name: e for v, e in zip(result.views, result.per_view_errors_px)}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "verdict", "corners", "sharpness", "reprojection_error_px"])
        for v in selector.verdicts:
            error = errors.get(v.name) if v.kept else None
            writer.writerow([v.name, v.reason, v.corners, f"{v.sharpness:.1f}", "" if error is None else f"{error:.4f}"])
