"""The calibration report: one PNG a person can judge a calibration by.

Panels: each view's RMS error (a bad view stands out), where the kept views' corners fall on the
image (uncovered areas leave the distortion there a guess), and all residuals (a round, centred
cloud well under a pixel is what a good calibration looks like; a pattern means a model or board
problem).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slac_robot.calibration.camera_calibration import CalibrationResult  # noqa: E402
from slac_robot.calibration.views import COVERAGE_GRID, coverage_cells  # noqa: E402


def write_report(path: pathlib.Path, result: CalibrationResult, title: str) -> None:
    """Writes the three-panel report PNG of a calibration."""
    width, height = result.intrinsics.width_px, result.intrinsics.height_px
    fig, (errors_ax, coverage_ax, residual_ax) = plt.subplots(1, 3, figsize=(16, 5))
    fig.suptitle(f"{title}\nRMS {result.rms_px:.3f} px, {len(result.views)} views")

    names = [v.name for v in result.views]
    errors_ax.bar(range(len(names)), result.per_view_errors_px, color="tab:blue")
    errors_ax.axhline(result.rms_px, color="k", linestyle="--", label=f"overall RMS {result.rms_px:.3f} px")
    errors_ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    errors_ax.set_ylabel("RMS reprojection error (px)")
    errors_ax.set_title("error per view")
    errors_ax.legend()

    cells = coverage_cells(result.views, (width, height))
    cols, rows = COVERAGE_GRID
    coverage_ax.imshow(cells, extent=(0, width, height, 0), cmap="Greens", vmin=0, vmax=1.6, alpha=0.6)
    for view in result.views:
        points = view.detection.image_points
        coverage_ax.plot(points[:, 0], points[:, 1], ".", markersize=2)
    coverage_ax.set_xlim(0, width)
    coverage_ax.set_ylim(height, 0)
    coverage_ax.set_aspect("equal")
    coverage_ax.set_title(f"corners on the image: {cells.mean():.0%} of {cols}x{rows} cells covered")

    residuals = np.concatenate(result.residuals_px)
    limit = max(1.0, float(np.abs(residuals).max()) * 1.1)
    residual_ax.plot(residuals[:, 0], residuals[:, 1], ".", markersize=2, alpha=0.5)
    residual_ax.set_xlim(-limit, limit)
    residual_ax.set_ylim(-limit, limit)
    residual_ax.set_aspect("equal")
    residual_ax.axhline(0, color="k", linewidth=0.5)
    residual_ax.axvline(0, color="k", linewidth=0.5)
    residual_ax.set_xlabel("x residual (px)")
    residual_ax.set_ylabel("y residual (px)")
    residual_ax.set_title("detected - reprojected corners")

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
