"""From a sensor image to the agent's image: region, undistortion, resize. Shared by all cameras.

Order of work: the region is chosen in the undistorted image, so with a calibration one remap
undistorts and crops at once (sampling the full sensor image, so the region's edges see real
pixels, not black borders); then an area-averaging resize to the agent's resolution.
Depth, when present, goes through the same steps with nearest-neighbour sampling, so that no
depth value is invented between a near and a far surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slac_robot.calibration.intrinsics import Intrinsics
from slac_robot.config import ConfigError

# A region and the agent image may differ in aspect ratio by this much (rounding to pixels);
# more would stretch the agent's view.
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class CropRegion:
    """A rectangle of the (undistorted) sensor image, in pixels from the top-left corner."""

    x_px: int
    y_px: int
    width_px: int
    height_px: int


@dataclass(frozen=True)
class ImageSettings:
    """What a hardware camera hands out.

    width_px, height_px: the agent's image size (SLAC: 64x64); None keeps the region's size
        (calibration captures full-resolution images this way).
    crop: the region of the sensor image the agent sees; None: the largest centred region with
        the agent image's aspect ratio (the whole image when no size is given).
    intrinsics: the camera's calibration; when given, images are undistorted.
    """

    width_px: int | None = None
    height_px: int | None = None
    crop: CropRegion | None = None
    intrinsics: Intrinsics | None = None


class ImagePipeline:
    """Turns sensor images of one size into the agent's images (see the module docstring).

    Raises ConfigError at construction, naming the fix, when the region leaves the sensor image,
    its aspect ratio differs from the agent image's, or the calibration was made at another size.
    """

    def __init__(self, settings: ImageSettings, source_width_px: int, source_height_px: int):
        if (settings.width_px is None) != (settings.height_px is None):
            raise ConfigError("camera width_px and height_px must both be set or both be null")
        self.source_size_px = (source_width_px, source_height_px)
        self.crop = settings.crop or _centred_region(
            source_width_px, source_height_px, settings.width_px, settings.height_px
        )
        _check_region(self.crop, source_width_px, source_height_px)
        self.output_size_px = (
            (settings.width_px, settings.height_px)
            if settings.width_px is not None
            else (self.crop.width_px, self.crop.height_px)
        )
        _check_aspect(self.crop, *self.output_size_px)
        self._maps = None
        if settings.intrinsics is not None:
            self._maps = _undistort_crop_maps(settings.intrinsics, self.crop, source_width_px, source_height_px)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 sensor image -> uint8 image of output_size_px (a new array)."""
        return self._run(rgb, cv2.INTER_LINEAR, cv2.INTER_AREA)

    def depth(self, depth_m: np.ndarray) -> np.ndarray:
        """float32 HxW depth aligned to the sensor image -> depth aligned to `image`'s output."""
        return self._run(depth_m, cv2.INTER_NEAREST, cv2.INTER_NEAREST)

    def _run(self, array: np.ndarray, remap_interpolation: int, resize_interpolation: int) -> np.ndarray:
        height, width = array.shape[:2]
        if (width, height) != self.source_size_px:
            raise ValueError(f"expected a {self.source_size_px[0]}x{self.source_size_px[1]} image, got {width}x{height}")
        if self._maps is not None:
            region = cv2.remap(array, *self._maps, remap_interpolation, borderMode=cv2.BORDER_CONSTANT)
        else:
            c = self.crop
            region = array[c.y_px : c.y_px + c.height_px, c.x_px : c.x_px + c.width_px]
        if (region.shape[1], region.shape[0]) == self.output_size_px:
            return np.array(region, copy=True)
        return cv2.resize(region, self.output_size_px, interpolation=resize_interpolation)


def _centred_region(width_px: int, height_px: int, out_width: int | None, out_height: int | None) -> CropRegion:
    """The largest region centred in the image with the aspect ratio out_width:out_height."""
    if out_width is None or out_height is None:
        return CropRegion(0, 0, width_px, height_px)
    scale = min(width_px / out_width, height_px / out_height)
    w, h = round(out_width * scale), round(out_height * scale)
    return CropRegion((width_px - w) // 2, (height_px - h) // 2, w, h)


def _check_region(crop: CropRegion, width_px: int, height_px: int) -> None:
    inside = (
        crop.x_px >= 0
        and crop.y_px >= 0
        and crop.width_px >= 1
        and crop.height_px >= 1
        and crop.x_px + crop.width_px <= width_px
        and crop.y_px + crop.height_px <= height_px
    )
    if not inside:
        raise ConfigError(
            f"crop x_px={crop.x_px} y_px={crop.y_px} width_px={crop.width_px} height_px={crop.height_px} "
            f"leaves the {width_px}x{height_px} camera image; choose a region inside it (or crop: null)"
        )


def _check_aspect(crop: CropRegion, out_width: int, out_height: int) -> None:
    region_aspect, out_aspect = crop.width_px / crop.height_px, out_width / out_height
    if abs(region_aspect / out_aspect - 1.0) > ASPECT_TOLERANCE:
        fitting_width = round(crop.height_px * out_aspect)
        raise ConfigError(
            f"crop {crop.width_px}x{crop.height_px} has aspect ratio {region_aspect:.3f} but the agent image "
            f"{out_width}x{out_height} has {out_aspect:.3f}, which would stretch it; "
            f"e.g. set crop.width_px={fitting_width}"
        )


def _undistort_crop_maps(
    intrinsics: Intrinsics, crop: CropRegion, width_px: int, height_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps that undistort the sensor image and cut the region out of the result."""
    if (intrinsics.width_px, intrinsics.height_px) != (width_px, height_px):
        raise ConfigError(
            f"the calibration was made on {intrinsics.width_px}x{intrinsics.height_px} images but the camera "
            f"streams {width_px}x{height_px}; calibrate at this resolution or set the camera's stream size "
            f"to {intrinsics.width_px}x{intrinsics.height_px}"
        )
    # The undistorted image keeps the camera matrix; the region shifts its principal point.
    region_matrix = intrinsics.camera_matrix.copy()
    region_matrix[0, 2] -= crop.x_px
    region_matrix[1, 2] -= crop.y_px
    return cv2.initUndistortRectifyMap(
        intrinsics.camera_matrix,
        intrinsics.distortion,
        None,
        region_matrix,
        (crop.width_px, crop.height_px),
        cv2.CV_32FC1,
    )
