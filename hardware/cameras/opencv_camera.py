"""OpenCV camera: a capture device (webcam) by index, a video file, or a folder of images.

All three share the newest-frame behaviour of StreamingCamera. A device delivers at its own
rate; a file or a folder is played at `fps` (it would otherwise be read as fast as it decodes)
and, at its end, either starts over (`loop`) or stops, after which reads go stale.
"""

from __future__ import annotations

import pathlib
import time

import cv2
import numpy as np

from slac_robot.config import ConfigError
from slac_robot.hardware.cameras.image import ImageSettings
from slac_robot.hardware.cameras.stream import Capture, SourceEnded, StreamingCamera
from slac_robot.interfaces import CameraError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The image files of a folder, sorted by name (png, jpg, bmp, tif, webp)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """Reads an image file as uint8 HxWx3 RGB (grey images are expanded); raises CameraError."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CameraError(f"{path} is not an image OpenCV can read; remove it from the folder")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class OpenCVCamera(StreamingCamera):
    """cv2.VideoCapture (or a folder of images) behind the Camera interface.

    image: the agent image settings (size, region, calibration).
    source: a device index (int, e.g. 0 for /dev/video0), a video file, or a folder of images
        (played in file-name order).
    width_px, height_px: the size asked of a device (None: its default); files keep theirs.
    fps: the rate asked of a device; the playback rate of a file or folder.
    loop: start a file or folder over at its end (otherwise its frames go stale).
    warmup_frames, max_reconnects, reconnect_wait_s: see StreamingCamera (a device that stops
        delivering is reopened).
    """

    def __init__(
        self,
        image: ImageSettings,
        source: int | str,
        width_px: int | None = None,
        height_px: int | None = None,
        fps: float = 30.0,
        loop: bool = False,
        warmup_frames: int = 0,
        max_reconnects: int = 3,
        reconnect_wait_s: float = 1.0,
    ):
        self._source = source
        self._request = (width_px, height_px)
        self._period_s = 1.0 / fps
        self._loop = loop
        self._capture: cv2.VideoCapture | None = None
        self._files: list[pathlib.Path] = []
        self._position = 0
        self._size: tuple[int, int] | None = None
        self._next_s = 0.0
        if isinstance(source, bool) or not isinstance(source, (int, str)):
            raise ConfigError(f"camera_device.source must be a device index or a path, got {source!r}")
        if isinstance(source, str):
            path = pathlib.Path(source).expanduser()
            if not path.exists():
                raise ConfigError(f"camera_device.source: {path} does not exist; give a video file, an image folder or a device index")
            if path.is_dir():
                self._files = image_files(path)
                if not self._files:
                    raise ConfigError(f"camera_device.source: {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        super().__init__(f"OpenCV {source}", image, warmup_frames, max_reconnects, reconnect_wait_s)
        self._start()

    @property
    def _finite(self) -> bool:
        return isinstance(self._source, str)

    def _open(self) -> tuple[int, int]:
        self._position = 0
        self._next_s = time.monotonic()
        if self._files:
            height, width = read_rgb(self._files[0]).shape[:2]
            self._size = (width, height)
            return self._size
        if isinstance(self._source, int):
            capture = cv2.VideoCapture(self._source)
            width, height = self._request
            if width is not None and height is not None:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            capture.set(cv2.CAP_PROP_FPS, 1.0 / self._period_s)
        else:
            capture = cv2.VideoCapture(str(pathlib.Path(self._source).expanduser()))
        if not capture.isOpened():
            raise CameraError(f"OpenCV cannot open {self._source!r}; check the device index (ls /dev/video*) or the file")
        self._capture = capture
        self._size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        return self._size

    def _grab(self) -> Capture:
        if self._finite:
            # Files are paced to `fps`; a device paces itself.
            self._next_s += self._period_s
            self._stop.wait(max(0.0, self._next_s - time.monotonic()))
        if self._files:
            return self._grab_file()
        if self._capture is None:
            raise RuntimeError("not open")
        ok, bgr = self._capture.read()
        if not ok:
            if not self._finite:
                raise RuntimeError("the device delivered no frame")
            if not self._loop:
                raise SourceEnded(f"{self._source} has no more frames")
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._capture.read()
            if not ok:
                raise CameraError(f"{self._source}: cannot read its first frame again to loop")
        media_s = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if self._finite else None
        return Capture(
            image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            device_stamp_s=media_s,
            device_clock="media_time" if self._finite else None,
        )

    def _grab_file(self) -> Capture:
        if self._position == len(self._files):
            if not self._loop:
                raise SourceEnded(f"{self._source} has no more images")
            self._position = 0
        path = self._files[self._position]
        self._position += 1
        image = read_rgb(path)
        if (image.shape[1], image.shape[0]) != self._size:
            raise CameraError(
                f"{path} is {image.shape[1]}x{image.shape[0]} but {self._files[0].name} is "
                f"{self._size[0]}x{self._size[1]}; a folder source needs images of one size"
            )
        return Capture(image=image)

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()
