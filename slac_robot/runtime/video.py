"""MP4 episode videos through imageio's ffmpeg (a binary that ships in the imageio-ffmpeg wheel)."""

from __future__ import annotations

import pathlib

import imageio.v2 as imageio
import numpy as np


class VideoWriter:
    """Writes RGB frames to an MP4 at a fixed frame rate.

    scale: integer nearest-neighbour upscaling (64x64 agent frames are too small to watch; the
        pixels stay the agent's own). Frames are padded to even sizes, as H.264 needs."""

    def __init__(self, path: pathlib.Path, fps: float, scale: int = 1):
        self.path = pathlib.Path(path)
        self._scale = int(scale)
        self._writer = imageio.get_writer(
            self.path, fps=fps, codec="libx264", quality=8, macro_block_size=1,
            ffmpeg_log_level="error",
        )
        self.frames = 0

    def append(self, image: np.ndarray) -> None:
        if self._scale > 1:
            image = image.repeat(self._scale, axis=0).repeat(self._scale, axis=1)
        pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        self._writer.append_data(image)
        self.frames += 1

    def close(self) -> None:
        self._writer.close()
