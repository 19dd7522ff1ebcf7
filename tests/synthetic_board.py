"""Photographs of a calibration board taken by a known camera, synthesised.

The board is drawn by OpenCV (Board.render) and viewed through a pinhole camera with lens
distortion: every sensor (sub)pixel's ray is undistorted with the known model
(cv2.undistortPoints), met with the board's plane at the given pose, and takes the board's
colour there. Rendering at 2x2 subpixels and averaging them anti-aliases the edges as a
sensor's pixel area does; then Gaussian pixel noise is added.
"""

from __future__ import annotations

import cv2
import numpy as np

from slac_robot.calibration.boards import Board
from slac_robot.calibration.intrinsics import Intrinsics

SUPERSAMPLE = 2
TEXTURE_PX_PER_MM = 8.0
TEXTURE_BLUR_PX = 1.5


class BoardCamera:
    """A known camera looking at a board: `photograph(rvec, tvec)` -> uint8 grey image.

    rvec, tvec: the board's pose in the camera frame (OpenCV's, as solvePnP returns it)."""

    def __init__(self, board: Board, intrinsics: Intrinsics, noise_grey: float, seed: int = 0):
        self.board = board
        self.intrinsics = intrinsics
        self._noise = noise_grey
        self._rng = np.random.default_rng(seed)
        # A little blur band-limits the printed board, so that sampling it at points does not
        # alias its edges (subpixels lie ~2-3 texture pixels apart at the distances used).
        self._texture = cv2.GaussianBlur(board.render(TEXTURE_PX_PER_MM).astype(np.float32), (0, 0), TEXTURE_BLUR_PX)
        # Each subpixel's viewing ray (x, y, 1) in the camera frame: fixed by the lens alone.
        width, height = intrinsics.width_px * SUPERSAMPLE, intrinsics.height_px * SUPERSAMPLE
        v, u = np.mgrid[0:height, 0:width].astype(np.float32)
        # subpixel centres in sensor pixel coordinates (pixel centres at integers)
        sensor = np.stack([(u + 0.5) / SUPERSAMPLE - 0.5, (v + 0.5) / SUPERSAMPLE - 0.5], axis=-1)
        rays = cv2.undistortPoints(
            sensor.reshape(-1, 1, 2), intrinsics.camera_matrix, intrinsics.distortion,
            criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-9),
        ).reshape(height, width, 2)
        self._rays = np.concatenate([rays, np.ones((height, width, 1), np.float32)], axis=-1)

    def photograph(self, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
        rotation, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64))
        tvec = np.asarray(tvec, dtype=np.float64).ravel()
        normal = rotation[:, 2]
        # The ray s * r meets the board plane n . (p - t) = 0 at s = (n . t) / (n . r).
        scale = (normal @ tvec) / (self._rays @ normal)
        points = self._rays * scale[..., None] - tvec
        board_xy = points @ rotation[:, :2]  # board coordinates (metres) of each subpixel
        px_per_m = TEXTURE_PX_PER_MM * 1000.0
        map_x = (board_xy[..., 0] * px_per_m - 0.5).astype(np.float32)
        map_y = (board_xy[..., 1] * px_per_m - 0.5).astype(np.float32)
        # Off the board: a white surround (the board's quiet zone), then grey beyond it.
        fine = cv2.remap(self._texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=255.0)
        fine[scale <= 0] = 128.0
        image = cv2.resize(fine, (self.intrinsics.width_px, self.intrinsics.height_px), interpolation=cv2.INTER_AREA)
        image += self._rng.normal(0.0, self._noise, image.shape).astype(np.float32)
        return np.clip(np.round(image), 0, 255).astype(np.uint8)


def varied_poses(board: Board, count: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Board poses (rvec, tvec) in the camera frame, spread over the image, distances and tilts
    as a person holding the board would make them; the board's centre stays in view."""
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(count):
        distance_m = rng.uniform(0.28, 0.5)
        tilt = np.radians(rng.uniform(-45, 45, size=2))
        roll = np.radians(rng.uniform(-20, 20))
        rotation = cv2.Rodrigues(np.array([tilt[0], tilt[1], 0.0]))[0] @ cv2.Rodrigues(np.array([0.0, 0.0, roll]))[0]
        # the board's centre aimed at a point spread over the image
        aim = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), 1.0]) * distance_m
        centre_on_board = np.array([*board.spec.size_mm, 0.0]) / 2000.0
        tvec = aim - rotation @ centre_on_board
        poses.append((cv2.Rodrigues(rotation)[0].ravel(), tvec))
    return poses
