"""Calibration boards: ChArUco (default) and plain chessboards. Finding their corners in an
image, their corners' positions on the board, and drawing them for printing.

Board coordinates: metres, origin at the board's top-left outer corner, x to the right, y down
the board, z into the board (OpenCV's convention for both board kinds).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slac_robot.config import ConfigError

BOARD_KINDS = ("charuco", "checkerboard")
# ChArUco needs this many corners for a pose (OpenCV refuses fewer in calibration).
MIN_CHARUCO_CORNERS = 6


@dataclass(frozen=True)
class BoardSpec:
    """A board as configured (configs/board/*.yaml). marker_mm, dictionary and legacy_pattern
    apply to ChArUco only."""

    kind: str
    squares_x: int
    squares_y: int
    square_mm: float
    marker_mm: float = 0.0
    dictionary: str = "DICT_5X5_100"
    legacy_pattern: bool = False

    @property
    def size_mm(self) -> tuple[float, float]:
        """Width and height of the board's squares, without any margin."""
        return self.squares_x * self.square_mm, self.squares_y * self.square_mm

    def describe(self) -> str:
        """One line naming the board, for files and reports."""
        text = f"{self.kind} {self.squares_x}x{self.squares_y} squares of {self.square_mm:g} mm"
        if self.kind == "charuco":
            legacy = ", legacy pattern" if self.legacy_pattern else ""
            text += f", markers {self.marker_mm:g} mm {self.dictionary}{legacy}"
        return text


@dataclass(frozen=True)
class Detection:
    """The board corners found in one image.

    ids: each corner's number on the board (row-major over the inner corners).
    object_points: (N, 3) float32, the corners on the board in metres (z = 0).
    image_points: (N, 2) float32, where they are in the image, in pixels.
    """

    ids: np.ndarray
    object_points: np.ndarray
    image_points: np.ndarray


class Board:
    """Finds a BoardSpec's corners in images (raises ConfigError for a spec OpenCV cannot make)."""

    def __init__(self, spec: BoardSpec):
        if spec.kind not in BOARD_KINDS:
            raise ConfigError(f"board.kind={spec.kind!r} is not one of: {', '.join(BOARD_KINDS)}")
        if spec.squares_x < 2 or spec.squares_y < 2 or spec.square_mm <= 0:
            raise ConfigError("board: squares_x and squares_y must be >= 2 and square_mm > 0")
        self.spec = spec
        square_m = spec.square_mm / 1000.0
        if spec.kind == "charuco":
            if not 0 < spec.marker_mm < spec.square_mm:
                raise ConfigError(f"board.marker_mm must be in (0, square_mm={spec.square_mm:g}), got {spec.marker_mm:g}")
            dictionary_id = getattr(cv2.aruco, spec.dictionary, None) if spec.dictionary.startswith("DICT_") else None
            if not isinstance(dictionary_id, int):
                names = ", ".join(n for n in dir(cv2.aruco) if n.startswith("DICT_") and n.upper() == n)
                raise ConfigError(f"board.dictionary={spec.dictionary!r} is not an ArUco dictionary; choose one of: {names}")
            dictionary = cv2.aruco.getPredefinedDictionary(dictionary_id)
            markers = (spec.squares_x * spec.squares_y) // 2
            if markers > dictionary.bytesList.shape[0]:
                raise ConfigError(
                    f"board: {spec.squares_x}x{spec.squares_y} squares need {markers} markers but "
                    f"{spec.dictionary} has {dictionary.bytesList.shape[0]}; choose a larger dictionary"
                )
            self._charuco = cv2.aruco.CharucoBoard(
                (spec.squares_x, spec.squares_y), square_m, spec.marker_mm / 1000.0, dictionary
            )
            self._charuco.setLegacyPattern(spec.legacy_pattern)
            self._detector = cv2.aruco.CharucoDetector(self._charuco)
            self.corner_grid = np.asarray(self._charuco.getChessboardCorners(), dtype=np.float32)
        else:
            self._pattern = (spec.squares_x - 1, spec.squares_y - 1)
            xs, ys = np.meshgrid(np.arange(1, spec.squares_x), np.arange(1, spec.squares_y))
            grid = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=-1) * square_m
            self.corner_grid = grid.astype(np.float32)

    @property
    def corner_count(self) -> int:
        """How many inner corners the board has."""
        return len(self.corner_grid)

    def detect(self, gray: np.ndarray) -> Detection | None:
        """The board's corners in a uint8 grey image, or None when the board is not found
        (a ChArUco view also needs MIN_CHARUCO_CORNERS corners, not all on one line)."""
        if self.spec.kind == "charuco":
            corners, ids, _, _ = self._detector.detectBoard(gray)
            if ids is None or len(ids) < MIN_CHARUCO_CORNERS:
                return None
            if self._charuco.checkCharucoCornersCollinear(ids):
                return None
            ids = ids.ravel().astype(np.int32)
            return Detection(ids, self.corner_grid[ids], corners.reshape(-1, 2).astype(np.float32))
        # The sector-based detector is accurate to ~0.05 px as it is (synthetic views);
        # CALIB_CB_ACCURACY made it 4x slower for no measurable gain there.
        found, corners = cv2.findChessboardCornersSB(gray, self._pattern)
        if not found:
            return None
        ids = np.arange(self.corner_count, dtype=np.int32)
        return Detection(ids, self.corner_grid, corners.reshape(-1, 2).astype(np.float32))

    def render(self, pixels_per_mm: float) -> np.ndarray:
        """The board (without margin) as a uint8 grey image at pixels_per_mm."""
        width_mm, height_mm = self.spec.size_mm
        size = (round(width_mm * pixels_per_mm), round(height_mm * pixels_per_mm))
        if self.spec.kind == "charuco":
            return self._charuco.generateImage(size, marginSize=0, borderBits=1)
        # Chessboard: the top-left square black, as OpenCV's own pattern.
        x = (np.arange(size[0]) / pixels_per_mm // self.spec.square_mm).astype(int)
        y = (np.arange(size[1]) / pixels_per_mm // self.spec.square_mm).astype(int)
        return np.where((x[None, :] + y[:, None]) % 2 == 0, 0, 255).astype(np.uint8)
