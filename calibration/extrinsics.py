"""Extrinsics: where the camera is relative to the D'Claw base, from one view of a ChArUco board
lying at a known pose; and the simulated agent camera placed to match it.

The D'Claw base frame is the simulation's world frame (ROBEL's): origin on the station floor
under the valve's axis, z up, x along the valve's zero angle. The board frame is OpenCV's:
origin at the board's top-left outer corner, x along its squares_x side, y along squares_y,
z into the board (a board lying face-up on the station has its z pointing down).

extrinsics.yaml (cv2.FileStorage, like intrinsics.yaml): base_T_camera (4x4: a point in the
camera's OpenCV frame -> the base frame), reprojection_error_px, corners, base_T_board,
board, intrinsics_file, date; and the simulated agent camera that matches the real agent image
(sim_camera_pos_m, sim_camera_lookat_m, sim_camera_up, sim_camera_fovy_deg).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import cv2
import numpy as np

from slac_robot.calibration.boards import Board
from slac_robot.calibration.intrinsics import CalibrationFileError, Intrinsics, open_storage
from slac_robot.config import ConfigError
from slac_robot.hardware.cameras.image import CropRegion


class LocateFailed(RuntimeError):
    """The board view does not give a camera pose worth using; the message says what to do."""


@dataclass(frozen=True)
class CameraLocation:
    """base_T_camera: 4x4 transform from the camera's OpenCV frame (x right, y down, z forward)
    to the base frame; reprojection_error_px: RMS over the corners used."""

    base_T_camera: np.ndarray
    reprojection_error_px: float
    corners: int


@dataclass(frozen=True)
class SimCameraPose:
    """A simulated camera that sees what the agent sees: MuJoCo's look-at form (see CameraPose)."""

    pos_m: tuple[float, float, float]
    lookat_m: tuple[float, float, float]
    up: tuple[float, float, float]
    fovy_deg: float


def pose_matrix(xyz_m, rpy_deg) -> np.ndarray:
    """4x4 transform from a position and roll, pitch, yaw in degrees (rotations about the fixed
    x, then y, then z axes: R = Rz(yaw) Ry(pitch) Rx(roll))."""
    roll, pitch, yaw = np.radians(np.asarray(rpy_deg, dtype=float))
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    transform = np.eye(4)
    transform[:3, :3] = rz @ ry @ rx
    transform[:3, 3] = np.asarray(xyz_m, dtype=float)
    return transform


def locate_camera(board: Board, gray: np.ndarray, intrinsics: Intrinsics, base_T_board: np.ndarray, max_error_px: float) -> CameraLocation:
    """Solves the board's pose in the camera (solvePnP on its corners) and chains it with the
    board's known pose in the base. Raises LocateFailed when the board is not found or the
    corners do not fit the pose within max_error_px."""
    if board.spec.kind != "charuco":
        raise ConfigError("locate-camera needs board=charuco: a chessboard's pose is ambiguous under a half turn")
    height, width = gray.shape[:2]
    if (width, height) != (intrinsics.width_px, intrinsics.height_px):
        raise ConfigError(
            f"the board image is {width}x{height} but the intrinsics are for "
            f"{intrinsics.width_px}x{intrinsics.height_px}; use an image from the calibrated camera mode"
        )
    detection = board.detect(gray)
    if detection is None:
        raise LocateFailed("the board was not found in the image; make it fill more of the view, lit evenly, in focus")
    ok, rvec, tvec = cv2.solvePnP(
        detection.object_points, detection.image_points, intrinsics.camera_matrix, intrinsics.distortion,
        flags=cv2.SOLVEPNP_IPPE,
    )
    if not ok:
        raise LocateFailed("OpenCV found no pose for the board's corners; take a view with more of the board")
    rvec, tvec = cv2.solvePnPRefineLM(
        detection.object_points, detection.image_points, intrinsics.camera_matrix, intrinsics.distortion, rvec, tvec
    )
    projected, _ = cv2.projectPoints(detection.object_points, rvec, tvec, intrinsics.camera_matrix, intrinsics.distortion)
    error_px = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - detection.image_points) ** 2, axis=1))))
    if error_px > max_error_px:
        raise LocateFailed(
            f"the corners fit the board's pose with an RMS error of {error_px:.2f} px, above max_error_px={max_error_px:g}; "
            "check that the board lies flat and that the intrinsics belong to this camera and mode"
        )
    camera_T_board = np.eye(4)
    camera_T_board[:3, :3] = cv2.Rodrigues(rvec)[0]
    camera_T_board[:3, 3] = tvec.ravel()
    return CameraLocation(base_T_board @ np.linalg.inv(camera_T_board), error_px, len(detection.ids))


def sim_camera_pose(base_T_camera: np.ndarray, intrinsics: Intrinsics, crop: CropRegion) -> SimCameraPose:
    """The simulated camera matching the agent image cut from `crop` of the undistorted image:
    at the camera's position, looking along the ray through the region's centre, rolled as the
    camera is, with the region's vertical field of view (MuJoCo cameras have a centred axis;
    pointing it at the region's centre is exact at the centre and close elsewhere)."""
    rotation, position = base_T_camera[:3, :3], base_T_camera[:3, 3]
    fx, fy = intrinsics.camera_matrix[0, 0], intrinsics.camera_matrix[1, 1]
    cx, cy = intrinsics.camera_matrix[0, 2], intrinsics.camera_matrix[1, 2]
    # pixel centres at integers: the region's centre is at x + (w - 1) / 2
    centre = np.array([(crop.x_px + (crop.width_px - 1) / 2 - cx) / fx, (crop.y_px + (crop.height_px - 1) / 2 - cy) / fy, 1.0])
    forward = rotation @ (centre / np.linalg.norm(centre))
    up = -rotation[:, 1]  # the image's y axis points down
    fovy_deg = float(np.degrees(2 * np.arctan(crop.height_px / (2 * fy))))
    return SimCameraPose(tuple(position), tuple(position + forward), tuple(up), fovy_deg)


def save_extrinsics(
    path: pathlib.Path, location: CameraLocation, base_T_board: np.ndarray, sim: SimCameraPose, board: str, intrinsics_file: str, date: str
) -> None:
    """Writes extrinsics.yaml (see the module docstring)."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    try:
        fs.write("base_T_camera", location.base_T_camera)
        fs.write("reprojection_error_px", location.reprojection_error_px)
        fs.write("corners", location.corners)
        fs.write("base_T_board", base_T_board)
        fs.write("sim_camera_pos_m", np.asarray(sim.pos_m).reshape(1, 3))
        fs.write("sim_camera_lookat_m", np.asarray(sim.lookat_m).reshape(1, 3))
        fs.write("sim_camera_up", np.asarray(sim.up).reshape(1, 3))
        fs.write("sim_camera_fovy_deg", sim.fovy_deg)
        fs.write("board", board)
        fs.write("intrinsics_file", intrinsics_file)
        fs.write("date", date)
    finally:
        fs.release()


def load_sim_camera_pose(path: str | pathlib.Path) -> SimCameraPose:
    """Reads the simulated camera pose from extrinsics.yaml; CalibrationFileError when it is
    missing or incomplete."""
    path = pathlib.Path(path).expanduser()
    redo = "run `slac-robot locate-camera` and point from_extrinsics at its extrinsics.yaml"
    fs = open_storage(path, "extrinsics file", redo)
    try:
        values = {}
        for key in ("sim_camera_pos_m", "sim_camera_lookat_m", "sim_camera_up"):
            node = fs.getNode(key)
            matrix = None if node.empty() else node.mat()
            if matrix is None or matrix.size != 3 or not np.isfinite(matrix).all():
                raise CalibrationFileError(f"{path} has no 3-vector {key}; {redo}")
            values[key] = tuple(float(v) for v in matrix.ravel())
        fovy = fs.getNode("sim_camera_fovy_deg")
        if fovy.empty() or not 0 < fovy.real() < 180:
            raise CalibrationFileError(f"{path} has no sim_camera_fovy_deg in (0, 180); {redo}")
        return SimCameraPose(values["sim_camera_pos_m"], values["sim_camera_lookat_m"], values["sim_camera_up"], fovy.real())
    finally:
        fs.release()
