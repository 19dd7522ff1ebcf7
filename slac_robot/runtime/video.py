"""MP4 episode videos through imageio's ffmpeg (a binary that ships in the imageio-ffmpeg wheel)."""

from __future__ import annotations

import errno
import os
import pathlib

import imageio.v2 as imageio
import numpy as np

from slac_robot.storage import remove_quietly


class VideoWriter:
    """Writes RGB frames to an MP4 at a fixed frame rate.

    scale: integer nearest-neighbour upscaling (64x64 agent frames are too small to watch; the
        pixels stay the agent's own). Frames are padded to even sizes, as H.264 needs.
    When ffmpeg cannot write the file (a full disk, a read-only folder), the partial file is
    removed and an OSError names it and the cause (found from the folder's filesystem: ffmpeg
    reports it only in its own words)."""

    def __init__(self, path: pathlib.Path, fps: float, scale: int = 1):
        self.path = pathlib.Path(path)
        self._scale = int(scale)
        try:
            self._writer = imageio.get_writer(
                self.path, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                ffmpeg_log_level="error",
            )
        except OSError as error:
            raise self._failed(error) from None
        self.frames = 0

    def append(self, image: np.ndarray) -> None:
        if self._scale > 1:
            image = image.repeat(self._scale, axis=0).repeat(self._scale, axis=1)
        pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        try:
            self._writer.append_data(image)
        except (OSError, RuntimeError) as error:  # ffmpeg gone: a broken pipe, or its own message
            raise self._failed(error) from None
        self.frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
        except (OSError, RuntimeError) as error:
            raise self._failed(error, writer) from None

    def _failed(self, error: Exception, writer=None) -> OSError:
        writer = writer or getattr(self, "_writer", None)
        self._writer = None
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass  # ffmpeg already failed; the error below says why
        remove_quietly(self.path)  # half a video is no video
        code = getattr(error, "errno", None) or _write_errno(self.path.parent)
        lines = str(error).strip().splitlines()
        cause = os.strerror(code) if code != errno.EIO else f"ffmpeg could not write it ({lines[-1] if lines else type(error).__name__})"
        return OSError(code, cause, str(self.path))


def _write_errno(folder: pathlib.Path) -> int:
    """Why a folder takes no more data, as an errno: read-only, full, not writable, else EIO."""
    try:
        stats = os.statvfs(folder)
    except OSError as error:
        return error.errno or errno.EIO
    if stats.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if stats.f_bavail * stats.f_frsize < 1 << 20:  # less than a video's worth of room left
        return errno.ENOSPC
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return errno.EIO
