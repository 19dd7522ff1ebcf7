"""A printable calibration board: PNG (with its dpi recorded) and/or PDF, at its true size.

Print at 100% ("actual size", no fit-to-page), then measure a square: the calibration must be
given the printed square size (board.square_mm), not the intended one.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from slac_robot.calibration.boards import Board  # noqa: E402

MM_PER_INCH = 25.4
FORMATS = ("png", "pdf")
LABEL_FONT_PT = 7


def write_board(board: Board, out_stem: pathlib.Path, formats: list[str], dpi: int, margin_mm: float) -> list[pathlib.Path]:
    """Writes the board with a white margin (the quiet zone detectors need) and a label naming
    it in the margin; returns the files written (out_stem + .png / .pdf)."""
    board_w_mm, board_h_mm = board.spec.size_mm
    page_w_mm, page_h_mm = board_w_mm + 2 * margin_mm, board_h_mm + 2 * margin_mm
    fig = plt.figure(figsize=(page_w_mm / MM_PER_INCH, page_h_mm / MM_PER_INCH))
    axes = fig.add_axes((margin_mm / page_w_mm, margin_mm / page_h_mm, board_w_mm / page_w_mm, board_h_mm / page_h_mm))
    axes.imshow(board.render(dpi / MM_PER_INCH), cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    axes.set_axis_off()
    fig.text(
        0.5,
        margin_mm / 3 / page_h_mm,
        f"{board.spec.describe()} - print at 100% (actual size) and measure a square",
        ha="center",
        va="center",
        fontsize=LABEL_FONT_PT,
        color="0.4",
    )
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=dpi, facecolor="white")
        written.append(path)
    plt.close(fig)
    return written
