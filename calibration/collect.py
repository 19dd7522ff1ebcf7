"""Collecting calibration views: from a folder of photos, or live from a camera.

Live capture takes one view per interval from the camera's newest frame. Where OpenCV can open
a window (a display and an OpenCV build with GUI support) it shows the frame with the detected
corners and the image area covered so far; otherwise (headless, e.g. over SSH) it prints each
verdict and keeps refreshing a preview PNG with the same picture. Kept views are saved, so a
calibration can be repeated from them with `images=<out_dir>/views`.
"""

from __future__ import annotations

import os
import pathlib
import time

import cv2
import numpy as np

from slac_robot.calibration.boards import Board
from slac_robot.calibration.views import COVERAGE_GRID, ViewSelector, coverage_cells
from slac_robot.config import ConfigError
from slac_robot.hardware.cameras.opencv_camera import IMAGE_SUFFIXES, image_files
from slac_robot.interfaces import Camera, StaleFrameError

WINDOW = "slac-robot calibrate-camera (q: stop)"


def views_from_folder(folder: pathlib.Path, make_selector) -> ViewSelector:
    """Considers every image of a folder (name order). make_selector(image_size_px) builds the
    ViewSelector once the first image's size is known; images of another size are dropped."""
    folder = pathlib.Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"images={folder} is not a folder; give the folder holding the board photos")
    paths = image_files(folder)
    if not paths:
        raise ConfigError(f"images={folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    selector = None
    for path in paths:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            print(f"  {path.name}: not an image OpenCV can read, skipped")
            continue
        if selector is None:
            selector = make_selector((gray.shape[1], gray.shape[0]))
        verdict = selector.consider(path.name, gray)
        print(f"  {path.name}: {verdict.reason} ({verdict.corners} corners)")
    if selector is None:
        raise ConfigError(f"images={folder}: none of its {len(paths)} files is an image OpenCV can read")
    return selector


def display_available(setting: bool | str) -> bool:
    """Whether to show a window: setting "auto" asks for a display and OpenCV GUI support."""
    if setting is False or setting == "false":
        return False
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW)
    except cv2.error:  # e.g. opencv-python-headless: no GUI
        return False
    return True


def views_from_camera(
    camera: Camera,
    make_selector,
    views: int,
    interval_s: float,
    timeout_s: float,
    display: bool,
    out_dir: pathlib.Path,
) -> ViewSelector:
    """Takes one view per interval_s from the camera until `views` are kept or timeout_s passed.
    Kept views are saved under out_dir/views/; the preview goes to a window or out_dir/live_view.png."""
    saved = out_dir / "views"
    saved.mkdir(parents=True, exist_ok=True)
    preview = out_dir / "live_view.png"
    selector: ViewSelector | None = None
    start_s, count = time.monotonic(), 0
    print(f"capturing up to {views} views for {timeout_s:g} s; move the board between views, then hold it still")
    while time.monotonic() - start_s < timeout_s and (selector is None or len(selector.views) < views):
        next_s = time.monotonic() + interval_s
        try:
            frame = camera.read(interval_s)
        except StaleFrameError as error:
            print(f"  {error}")
        else:
            if selector is None:
                selector = make_selector((frame.image.shape[1], frame.image.shape[0]))
            name = f"capture_{count:03d}.png"
            count += 1
            gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
            verdict = selector.consider(name, gray)
            if verdict.kept:
                cv2.imwrite(str(saved / name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
            print(f"  {name}: {verdict.reason}; {len(selector.views)}/{views} kept, coverage {selector.coverage():.0%}")
            picture = coverage_picture(frame.image, selector)
            if display:
                cv2.imshow(WINDOW, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            else:
                cv2.imwrite(str(preview), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        wait_ms = max(1, int((next_s - time.monotonic()) * 1000))
        if display:
            if cv2.waitKey(wait_ms) & 0xFF == ord("q"):
                break
        else:
            time.sleep(wait_ms / 1000.0)
    if display:
        cv2.destroyWindow(WINDOW)
    if selector is None:
        raise StaleFrameError("the camera delivered no fresh frame during the capture")
    return selector


def coverage_picture(image: np.ndarray, selector: ViewSelector) -> np.ndarray:
    """The RGB frame with the covered cells tinted green and the last view's corners marked."""
    picture = image.copy()
    height, width = picture.shape[:2]
    cells = coverage_cells(selector.views, (width, height))
    cols, rows = COVERAGE_GRID
    tint = np.zeros_like(picture)
    for row, col in zip(*np.nonzero(cells)):
        y0, y1 = row * height // rows, (row + 1) * height // rows
        x0, x1 = col * width // cols, (col + 1) * width // cols
        tint[y0:y1, x0:x1] = (0, 160, 0)
    picture = cv2.addWeighted(picture, 1.0, tint, 0.35, 0.0)
    last = selector.verdicts[-1] if selector.verdicts else None
    if last is not None and last.kept:
        for x, y in selector.views[-1].detection.image_points:
            cv2.circle(picture, (int(round(x)), int(round(y))), 3, (255, 0, 0), -1)
    text = f"{len(selector.views)} views, coverage {selector.coverage():.0%}"
    cv2.putText(picture, text, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2)
    return picture
