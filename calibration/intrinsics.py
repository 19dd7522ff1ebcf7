"""A camera's intrinsics: the OpenCV YAML file that calibration writes and cameras read.

The file is written with cv2.FileStorage, so plain OpenCV reads it too:

    fs = cv2.FileStorage("intrinsics.yaml", cv2.FILE_STORAGE_READ)
    K, dist = fs.getNode("camera_matrix").mat(), fs.getNode("distortion_coefficients").mat()

Keys: image_width, image_height, camera_matrix (3x3), distortion_coefficients (1xN, OpenCV's
order k1 k2 p1 p2 [k3 [k4 k5 k6]]), distortion_model, avg_reprojection_error (px),
per_view_reprojection_errors (px), std_deviations_intrinsics (fx fy cx cy k1 ...), view_names,
board, calibration_date. Only the first four are needed to use a calibration.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import cv2
import numpy as np

from slac_robot.config import ConfigError

# ROS names the distortion models by their coefficient count.
DISTORTION_MODELS = {5: "plumb_bob", 8: "rational_polynomial"}


class CalibrationFileError(ConfigError):
    """A calibration file is missing, unreadable or incomplete; the message says what to redo."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera matrix and distortion for images of width_px x height_px.

    camera_matrix: 3x3 [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels.
    distortion: OpenCV's coefficients, k1 k2 p1 p2 k3 (5) or with k4 k5 k6 (8).
    """

    camera_matrix: np.ndarray
    distortion: np.ndarray
    width_px: int
    height_px: int

    @property
    def fovy_deg(self) -> float:
        """The vertical field of view of the whole image, in degrees."""
        return float(np.degrees(2.0 * np.arctan(self.height_px / (2.0 * self.camera_matrix[1, 1]))))


@dataclass(frozen=True)
class CalibrationRecord:
    """What a calibration run found, beyond the intrinsics: written beside them."""

    rms_px: float
    per_view_errors_px: np.ndarray
    std_deviations: np.ndarray
    view_names: list[str]
    board: str
    date: str


def save_intrinsics(path: pathlib.Path, intrinsics: Intrinsics, record: CalibrationRecord) -> None:
    """Writes the OpenCV YAML calibration file (see the module docstring for its keys)."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    try:
        fs.write("image_width", intrinsics.width_px)
        fs.write("image_height", intrinsics.height_px)
        fs.write("camera_matrix", np.asarray(intrinsics.camera_matrix, dtype=np.float64))
        fs.write("distortion_coefficients", np.asarray(intrinsics.distortion, dtype=np.float64).reshape(1, -1))
        fs.write("distortion_model", DISTORTION_MODELS.get(intrinsics.distortion.size, "opencv"))
        fs.write("avg_reprojection_error", float(record.rms_px))
        fs.write("per_view_reprojection_errors", np.asarray(record.per_view_errors_px, dtype=np.float64).reshape(-1, 1))
        fs.write("std_deviations_intrinsics", np.asarray(record.std_deviations, dtype=np.float64).reshape(-1, 1))
        fs.startWriteStruct("view_names", cv2.FileNode_SEQ)
        for name in record.view_names:
            fs.write("", name)
        fs.endWriteStruct()
        fs.write("board", record.board)
        fs.write("calibration_date", record.date)
    finally:
        fs.release()


def load_intrinsics(path: str | pathlib.Path) -> Intrinsics:
    """Reads camera_matrix, distortion_coefficients and the image size from an OpenCV YAML file.

    Raises CalibrationFileError (a ConfigError) naming the file and the fix when the file is
    missing, is not an OpenCV file, lacks a key, or holds values no camera can have."""
    path = pathlib.Path(path).expanduser()
    redo = "run `slac-robot calibrate-camera` and point calibration_file at its intrinsics.yaml"
    fs = open_storage(path, "calibration file", redo)
    try:
        camera_matrix = _matrix(fs, "camera_matrix", path, redo)
        distortion = _matrix(fs, "distortion_coefficients", path, redo).ravel()
        width_px, height_px = (_size(fs, key, path, redo) for key in ("image_width", "image_height"))
    finally:
        fs.release()
    if camera_matrix.shape != (3, 3):
        raise CalibrationFileError(f"{path}: camera_matrix must be 3x3, got {camera_matrix.shape}; {redo}")
    if distortion.size not in (4, 5, 8, 12, 14):
        raise CalibrationFileError(
            f"{path}: distortion_coefficients must hold 4, 5, 8, 12 or 14 values, got {distortion.size}; {redo}"
        )
    if not (np.isfinite(camera_matrix).all() and np.isfinite(distortion).all()):
        raise CalibrationFileError(f"{path}: camera_matrix or distortion_coefficients hold NaN/inf; {redo}")
    if camera_matrix[0, 0] <= 0 or camera_matrix[1, 1] <= 0:
        raise CalibrationFileError(f"{path}: focal lengths fx, fy must be > 0; {redo}")
    return Intrinsics(camera_matrix, distortion, width_px, height_px)


def open_storage(path: pathlib.Path, what: str, redo: str) -> cv2.FileStorage:
    """Opens an OpenCV YAML/XML file for reading; CalibrationFileError (naming `what` and the
    fix `redo`) when it is missing or OpenCV cannot parse it."""
    if not path.is_file():
        raise CalibrationFileError(f"{what} {path} does not exist; {redo}")
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as error:
        # OpenCV's parser error reaches Python as cv2.error, or as a SystemError wrapping it.
        cause = error.__cause__ or error
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[-1].split("error: ", 1)[-1]
        raise CalibrationFileError(f"{what} {path} is not an OpenCV YAML/XML file ({reason}); {redo}") from None
    if not fs.isOpened():
        raise CalibrationFileError(f"{what} {path} cannot be opened; {redo}")
    return fs


def _matrix(fs: cv2.FileStorage, key: str, path: pathlib.Path, redo: str) -> np.ndarray:
    node = fs.getNode(key)
    matrix = None if node.empty() else node.mat()
    if matrix is None:
        raise CalibrationFileError(f"{path} has no {key} matrix; {redo}")
    return np.asarray(matrix, dtype=np.float64)


def _size(fs: cv2.FileStorage, key: str, path: pathlib.Path, redo: str) -> int:
    node = fs.getNode(key)
    if node.empty() or not node.isInt() or int(node.real()) < 1:
        raise CalibrationFileError(f"{path} has no positive integer {key}; {redo}")
    return int(node.real())
