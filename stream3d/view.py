"""The part of each raw frame that compute sees: a region of interest, then binning.

``stream.roi = [y0, x0, y1, x1]`` (raw px; y1, x1 exclusive, like a Python slice; empty = the
whole frame) crops the frame; ``stream.bin = b`` then **sums** each b x b block of counts. A sum
keeps the physics of a detector with b x b larger pixels: counts stay Poisson with mean
dose x (b x pixel_size)², so ``detector.dose`` (e/Å²) and the Poisson loss keep their meaning,
and pop-out and refinement run with ``sample.pixel_size`` x b. (A mean would shrink the counts'
variance b² times below their mean, which the Poisson loss would misread.)

An explicit ROI whose height or width is not a multiple of ``bin`` is refused; the whole frame
(empty ROI) is cut down to the largest multiple at its bottom and right edges.

The raw frame is always stored whole; the view only changes what compute gets and the shape,
pixel size and offset of the stored volumes (:meth:`View.attrs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream3d.config import Config, ConfigError, from_dict


@dataclass(frozen=True)
class View:
    """A resolved view of frames of one shape: ``roi`` (y0, x0, y1, x1) raw px, ``bin`` >= 1,
    ``raw_pixel_size`` Å."""

    roi: tuple[int, int, int, int]
    bin: int
    raw_pixel_size: float
    frame_shape: tuple[int, int]  # (ny, nx) raw px

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the frames compute gets (binned px)."""
        y0, x0, y1, x1 = self.roi
        return ((y1 - y0) // self.bin, (x1 - x0) // self.bin)

    @property
    def pixel_size(self) -> float:
        """Å per binned pixel."""
        return self.raw_pixel_size * self.bin

    @property
    def origin(self) -> tuple[float, float]:
        """(y, x) Å of the ROI's top-left corner in the raw frame (raw pixel k spans
        [k, k + 1) x pixel_size)."""
        return (self.roi[0] * self.raw_pixel_size, self.roi[1] * self.raw_pixel_size)

    @property
    def whole(self) -> bool:
        """True when compute sees the raw frame unchanged."""
        return self.bin == 1 and self.roi == (0, 0, *self.frame_shape)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The view of one raw frame (y, x) as float32: cropped, then b x b block sums (exact
        for integer counts below 2^24 per block)."""
        return crop_bin(frame, self.roi, self.bin, "sum")

    def attrs(self) -> dict[str, Any]:
        """What the run store records (``stream3d.view``)."""
        return {"roi": [int(v) for v in self.roi], "bin": int(self.bin),
                "shape": [int(n) for n in self.shape], "pixel_size": float(self.pixel_size),
                "origin": [float(v) for v in self.origin]}


def view_for(config: Config, frame_shape: Sequence[int]) -> View:
    """The view ``config`` asks for on frames of ``frame_shape`` (raw px); :class:`ConfigError`
    (one line) when the ROI does not lie inside the frame or leaves less than one binned pixel."""
    ny, nx = (int(n) for n in frame_shape[-2:])
    b = config.stream.bin
    roi = tuple(config.stream.roi)
    if roi:
        y0, x0, y1, x1 = roi
        if y1 > ny or x1 > nx:
            raise ConfigError(f"stream.roi {list(roi)} reaches beyond the {ny} x {nx} px frame "
                              f"(y1 <= {ny} and x1 <= {nx} px)")
    else:
        y0, x0, y1, x1 = 0, 0, ny - ny % b, nx - nx % b  # the remainder cut at bottom/right
        if y1 == 0 or x1 == 0:
            raise ConfigError(f"stream.bin = {b} is larger than the {ny} x {nx} px frame")
    return View((y0, x0, y1, x1), b, config.sample.pixel_size, (ny, nx))


def compute_config(config: Config) -> Config:
    """The config pop-out and refinement run with: ``sample.pixel_size`` x ``stream.bin``
    (the ROI and bin already applied to the frame, so they are reset)."""
    if config.stream.bin == 1 and not config.stream.roi:
        return config
    data = config.to_dict()
    data["sample"]["pixel_size"] = config.sample.pixel_size * config.stream.bin
    data["stream"]["roi"] = []
    data["stream"]["bin"] = 1
    return from_dict(data)


def crop_bin(array: np.ndarray, roi: Sequence[int], b: int, how: str = "sum") -> np.ndarray:
    """``array`` (..., y, x) cut to ``roi`` (y0, x0, y1, x1) px, then ``b`` x ``b`` blocks
    reduced by "sum" (counts) or "mean" (fractions, e.g. a true occupancy seen at the binned
    pixel size), as float32; a remainder that does not fill a block is dropped."""
    y0, x0, y1, x1 = (int(v) for v in roi)
    cut = np.asarray(array)[..., y0:y1, x0:x1]
    if b == 1:
        return np.asarray(cut, dtype=np.float32)
    ny, nx = cut.shape[-2] // b, cut.shape[-1] // b
    blocks = cut[..., : ny * b, : nx * b].reshape(*cut.shape[:-2], ny, b, nx, b)
    reduce = {"sum": np.sum, "mean": np.mean}[how]
    return reduce(blocks, axis=(-3, -1), dtype=np.float64).astype(np.float32)
