"""What every hardware camera shares: a capture thread that keeps only the newest frame.

A subclass says how to open its source, grab one image and release it (and, if it can, how to
recover a lost device); this base runs the warm-up, the background thread, the image pipeline,
the freshness check and the bounded reconnects. The control loop never waits on the camera:
`read` hands out the newest frame at once, or raises StaleFrameError when it is too old.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from slac_robot.hardware.cameras.image import ImagePipeline, ImageSettings
from slac_robot.interfaces import CameraError, Frame, StaleFrameError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capture:
    """One image as a source delivers it, before the image pipeline.

    image: uint8 HxWx3 RGB at the source's size (an array the source no longer writes to).
    depth_m: float32 HxW depth in metres aligned to `image`, or None.
    device_stamp_s, device_clock: see Frame.
    """

    image: np.ndarray
    depth_m: np.ndarray | None = None
    device_stamp_s: float | None = None
    device_clock: str | None = None


class SourceEnded(Exception):
    """A finite source (a video file, a folder of images) has delivered its last frame."""


class StreamingCamera:
    """Base of the hardware cameras: the Camera interface over a background capture thread.

    Subclasses implement `_open() -> (width_px, height_px)`, `_grab() -> Capture` (blocking for
    the next image, for a bounded time; raising SourceEnded at the end of a finite
    source, any other exception when the source failed) and `_release()`; `_recover()` reopens a
    failed source (default: `_open()`); a CameraError from `_grab` ends the stream without
    reconnecting. Subclasses call `_start()` at the end of their constructor.

    name: how messages name the camera (e.g. "RealSense 123456789").
    image: the agent image settings (size, region, calibration).
    warmup_frames: frames dropped after opening (auto-exposure settles meanwhile).
    max_reconnects: reconnect attempts in a row, without a frame in between, before giving up.
    reconnect_wait_s: the pause after a failed reconnect before the next attempt.
    """

    def __init__(
        self,
        name: str,
        image: ImageSettings,
        warmup_frames: int,
        max_reconnects: int,
        reconnect_wait_s: float,
    ):
        self.name = name
        self._settings = image
        self._warmup_frames = warmup_frames
        self._max_reconnects = max_reconnects
        self._reconnect_wait_s = reconnect_wait_s
        self._pipeline: ImagePipeline | None = None
        self._newest: Frame | None = None
        self._index = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended: str | None = None
        self._failure: str | None = None
        self.reconnects = 0

    # -- what subclasses provide ------------------------------------------------------------

    def _open(self) -> tuple[int, int]:
        raise NotImplementedError

    def _grab(self) -> Capture:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _recover(self) -> None:
        self._open()

    # -- the Camera interface ---------------------------------------------------------------

    @property
    def pipeline(self) -> ImagePipeline:
        """The image pipeline, sized for this camera's source (set once the source is open)."""
        assert self._pipeline is not None, "the camera is not started"
        return self._pipeline

    def read(self, max_age_s: float) -> Frame:
        """Returns the newest frame; raises StaleFrameError when it is older than max_age_s,
        CameraError when the device was lost for good."""
        with self._lock:
            frame = self._newest
        if self._failure is not None:
            raise CameraError(self._failure)
        assert frame is not None, "_start() delivers a first frame before the camera is handed out"
        age_s = time.monotonic() - frame.stamp_s
        if age_s > max_age_s:
            why = f" ({self._ended})" if self._ended else ""
            raise StaleFrameError(
                f"{self.name}: the newest frame is {age_s:.3f} s old, more than {max_age_s:.3f} s{why}"
            )
        return frame

    def close(self) -> None:
        """Stops the capture thread and releases the source (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._release()

    # -- the machinery ----------------------------------------------------------------------

    def _start(self) -> None:
        """Opens the source, builds the pipeline, drops the warm-up frames, keeps the first
        frame and starts the thread. Releases the source before raising."""
        try:
            width_px, height_px = self._open()
            self._pipeline = ImagePipeline(self._settings, width_px, height_px)
            for _ in range(self._warmup_frames):
                self._grab()
            self._keep(self._grab())
        except SourceEnded as end:
            self._release()
            raise CameraError(f"{self.name}: {end} before the warm-up ({self._warmup_frames} frames) was over") from None
        except Exception:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name=f"camera {self.name}", daemon=True)
        self._thread.start()

    def _keep(self, capture: Capture) -> None:
        arrived_s = time.monotonic()
        pipeline = self.pipeline
        frame = Frame(
            image=pipeline.image(capture.image),
            stamp_s=arrived_s,
            index=self._index,
            depth_m=None if capture.depth_m is None else pipeline.depth(capture.depth_m),
            device_stamp_s=capture.device_stamp_s,
            device_clock=capture.device_clock,
        )
        self._index += 1
        with self._lock:
            self._newest = frame

    def _run(self) -> None:
        attempts = 0  # reconnect attempts since the last frame
        while not self._stop.is_set():
            try:
                capture = self._grab()
            except SourceEnded as end:
                self._ended = str(end)
                log.info("%s: %s", self.name, end)
                return
            except CameraError as error:  # the source knows that trying again cannot help
                self._failure = str(error)
                log.error(self._failure)
                return
            except Exception as error:  # a driver raises its own types; any of them means "lost"
                if self._stop.is_set():
                    return
                if attempts == self._max_reconnects:
                    self._failure = (
                        f"{self.name}: lost ({error}); gave up after {attempts} reconnect attempts. "
                        "Check the cable and the USB port, then restart"
                    )
                    log.error(self._failure)
                    return
                attempts += 1
                self.reconnects += 1
                log.warning("%s: %s; reconnecting (attempt %d of %d)", self.name, error, attempts, self._max_reconnects)
                self._reconnect()
                continue
            attempts = 0
            try:
                self._keep(capture)
            except Exception as error:  # e.g. a device that changed its image size mid-stream
                self._failure = f"{self.name}: cannot process its frames: {error}"
                log.error(self._failure)
                return

    def _reconnect(self) -> None:
        try:
            self._release()
            self._recover()
        except Exception as error:
            # The next grab fails at once and counts as the next attempt; wait first so that
            # a device that is re-enumerating gets the time to come back.
            log.warning("%s: reconnect failed: %s", self.name, error)
            self._stop.wait(self._reconnect_wait_s)
