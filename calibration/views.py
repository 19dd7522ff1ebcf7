"""Choosing the views a calibration uses: the board found with enough corners, sharp, and not a
near-duplicate of a view already kept; and how much of the image the kept views cover."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slac_robot.calibration.boards import Board, Detection

# Coverage is counted on a grid of this many cells across and down the image.
COVERAGE_GRID = (8, 6)


@dataclass(frozen=True)
class View:
    """One kept image: its name (file name or capture number) and the board corners in it."""

    name: str
    detection: Detection
    sharpness: float


@dataclass(frozen=True)
class Verdict:
    """What became of one image: kept, or why not (a short reason for the listing)."""

    name: str
    kept: bool
    reason: str
    corners: int
    sharpness: float


def sharpness(gray: np.ndarray, points: np.ndarray) -> float:
    """Variance of the Laplacian inside the bounding box of `points`: low when blurred."""
    x, y, w, h = cv2.boundingRect(points.astype(np.float32))
    patch = gray[y : y + h, x : x + w]
    return float(cv2.Laplacian(patch, cv2.CV_64F).var()) if patch.size else 0.0


def mean_motion(a: Detection, b: Detection) -> float | None:
    """Mean distance (px) the corners seen in both views moved between them; None when the
    views share fewer than half of the smaller view's corners (then they differ anyway)."""
    common, in_a, in_b = np.intersect1d(a.ids, b.ids, assume_unique=True, return_indices=True)
    if len(common) * 2 < min(len(a.ids), len(b.ids)):
        return None
    return float(np.linalg.norm(a.image_points[in_a] - b.image_points[in_b], axis=1).mean())


class ViewSelector:
    """Decides, one image at a time, which views to keep.

    board: the board to look for.
    image_size_px: (width, height) every image must have.
    min_corners: fewer detected corners and a view is dropped.
    min_sharpness: lower variance of the Laplacian (over the board) and a view is dropped.
    min_motion: the corners must move at least this fraction of the image diagonal (mean) from
        every kept view, or the view is a near-duplicate.
    """

    def __init__(self, board: Board, image_size_px: tuple[int, int], min_corners: int, min_sharpness: float, min_motion: float):
        self.board = board
        self.image_size_px = image_size_px
        self._min_corners = min_corners
        self._min_sharpness = min_sharpness
        self._min_motion_px = min_motion * float(np.hypot(*image_size_px))
        self.views: list[View] = []
        self.verdicts: list[Verdict] = []

    def consider(self, name: str, gray: np.ndarray) -> Verdict:
        """Looks at one uint8 grey image; keeps it as a view or says why not."""
        height, width = gray.shape[:2]
        if (width, height) != self.image_size_px:
            return self._verdict(name, None, 0.0, f"size {width}x{height}, not {self.image_size_px[0]}x{self.image_size_px[1]}")
        detection = self.board.detect(gray)
        if detection is None:
            return self._verdict(name, None, 0.0, "no board found")
        score = sharpness(gray, detection.image_points)
        if len(detection.ids) < self._min_corners:
            return self._verdict(name, detection, score, f"{len(detection.ids)} corners < selection.min_corners")
        if score < self._min_sharpness:
            return self._verdict(name, detection, score, "blurred")
        for view in self.views:
            motion = mean_motion(detection, view.detection)
            if motion is not None and motion < self._min_motion_px:
                return self._verdict(name, detection, score, f"near-duplicate of {view.name}")
        self.views.append(View(name, detection, score))
        return self._verdict(name, detection, score, "kept")

    def _verdict(self, name: str, detection: Detection | None, score: float, reason: str) -> Verdict:
        verdict = Verdict(name, reason == "kept", reason, 0 if detection is None else len(detection.ids), score)
        self.verdicts.append(verdict)
        return verdict

    def coverage(self) -> float:
        """The fraction of the COVERAGE_GRID cells that hold a corner of some kept view."""
        return float(coverage_cells(self.views, self.image_size_px).mean())

    def summary(self) -> str:
        """e.g. "14 kept of 30 images: 9 no board found, 4 blurred, 3 near-duplicate"."""
        dropped: dict[str, int] = {}
        for verdict in self.verdicts:
            if not verdict.kept:
                reason = verdict.reason.split(" of ")[0] if verdict.reason.startswith("near-duplicate") else verdict.reason
                reason = "too few corners" if "min_corners" in reason else reason
                dropped[reason] = dropped.get(reason, 0) + 1
        parts = ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items()))
        return f"{len(self.views)} kept of {len(self.verdicts)} images" + (f": {parts}" if parts else "")


def coverage_cells(views: list[View], image_size_px: tuple[int, int]) -> np.ndarray:
    """Boolean (rows, cols) grid over the image: True where some kept view has a corner."""
    cols, rows = COVERAGE_GRID
    cells = np.zeros((rows, cols), dtype=bool)
    width, height = image_size_px
    for view in views:
        points = view.detection.image_points
        col = np.clip((points[:, 0] / width * cols).astype(int), 0, cols - 1)
        row = np.clip((points[:, 1] / height * rows).astype(int), 0, rows - 1)
        cells[row, col] = True
    return cells
