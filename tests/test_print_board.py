"""`slac-robot print-board`: a board at its true size that the detector finds whole."""

from __future__ import annotations

import re

import cv2
import pytest

from slac_robot.backends import make_board
from slac_robot.cli import main
from slac_robot.config import load_config

MM_PER_INCH, POINTS_PER_INCH = 25.4, 72.0


@pytest.mark.parametrize("board", ["charuco", "checkerboard"])
def test_the_printed_board_has_its_true_size_and_is_detected_whole(tmp_path, board):
    out = tmp_path / "board"
    assert main(["print-board", f"board={board}", f"out={out}", "dpi=150", "margin_mm=12"]) == 0
    spec = make_board(load_config("print-board", [f"board={board}"]).board).spec
    page_mm = [side + 2 * 12 for side in spec.size_mm]
    image = cv2.imread(str(out.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
    assert image.shape[1] == pytest.approx(page_mm[0] / MM_PER_INCH * 150, abs=1)
    assert image.shape[0] == pytest.approx(page_mm[1] / MM_PER_INCH * 150, abs=1)
    detection = make_board(load_config("print-board", [f"board={board}"]).board).detect(image)
    assert detection is not None and len(detection.ids) == (spec.squares_x - 1) * (spec.squares_y - 1)
    media_box = re.search(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", out.with_suffix(".pdf").read_bytes())
    width_pt, height_pt = (float(v) for v in media_box.groups())
    assert width_pt == pytest.approx(page_mm[0] / MM_PER_INCH * POINTS_PER_INCH, abs=0.01)
    assert height_pt == pytest.approx(page_mm[1] / MM_PER_INCH * POINTS_PER_INCH, abs=0.01)


def test_a_dictionary_too_small_for_the_board_is_a_config_error(tmp_path, capsys):
    code = main(["print-board", "board.squares_x=15", "board.squares_y=15", "board.dictionary=DICT_4X4_50", f"out={tmp_path / 'b'}"])
    assert code == 2
    assert "need 112 markers but DICT_4X4_50 has 50; choose a larger dictionary" in capsys.readouterr().err
