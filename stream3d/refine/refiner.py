"""One ``Refiner`` per stream: refines each frame, warm-started from the previous volume."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from stream3d.config import Config
from stream3d.device import resolve_device
from stream3d.errors import UserError
from stream3d.refine.measurement import measured_intensity, uniform_volume
from stream3d.refine.model import ImagingModel
from stream3d.refine.pipeline import refine_volume
from stream3d.refine.result import RefineResult
from stream3d.refine.warmstart import WarmStart, residual_map, warm_start

if TYPE_CHECKING:  # pop-out is built beside this package; only its volume is used here
    from stream3d.popout import PopoutResult


class Refiner:
    """Refines the frames of one stream in order, each starting from the previous depths.

    The first frame (and any frame after :meth:`reset`, or after a scene change detected from
    the data loss) starts from ``refine.init``: pop-out's volume or a uniform one. Material may
    only be in pop-out's support or the previous volume's.
    """

    def __init__(self, config: Config, device: str | torch.device | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.refine.device if device is None else device)
        self.model = ImagingModel.from_config(config)
        self.previous: np.ndarray | None = None
        self.reference: np.ndarray | None = None  # per-pixel loss of previous on its frame
        # torch.optim's first optimiser imports torch._dynamo (~10 s on a laptop CPU): pay it
        # now, before frames arrive, not inside the first frame's refinement.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        #: Optional callback(stage, iteration, param) after every optimiser step (progress,
        #: or errors against a known truth); see :func:`refine_volume`.
        self.callback = None

    def reset(self) -> None:
        """Forget the previous volume: the next frame starts cold."""
        self.previous = None
        self.reference = None

    def refine(self, frame: np.ndarray, popout: "PopoutResult") -> RefineResult:
        """Refine one frame (raw counts (y, x)) given pop-out's result for it."""
        settings = self.config.refine
        popout_volume = np.asarray(popout.volume, dtype=np.float32)
        if popout_volume.ndim != 3 or popout_volume.shape[1:] != np.shape(frame):
            raise UserError(f"pop-out volume shape {popout_volume.shape} does not match the "
                            f"frame {np.shape(frame)}")
        start, warm = self._cold_start(frame, popout_volume), False
        if self.previous is not None and self.previous.shape == popout_volume.shape \
                and settings.iterations > 0:
            warm_start_ = self._warm_start(frame, popout_volume)
            warm = warm_start_.warm
            if warm:
                start = warm_start_.volume
        support = _support(popout_volume)
        if warm:
            support |= _support(self.previous)
        result = refine_volume(frame, start, self.config, device=self.device,
                               support=support if support.any() else None, warm=warm,
                               callback=self.callback)
        self.previous = result.volume
        measured = measured_intensity(frame, self.model, self.device)
        self.reference = residual_map(measured, result.volume, self.model, kind=settings.loss)
        return result

    def _cold_start(self, frame: np.ndarray, popout_volume: np.ndarray) -> np.ndarray:
        # iterations = 0 means pop-out only (DESIGN.md), whatever the start would have been.
        if self.config.refine.init == "uniform" and self.config.refine.iterations > 0:
            return uniform_volume(frame, self.model, self.config.sample.slices)
        return popout_volume

    def _warm_start(self, frame: np.ndarray, popout_volume: np.ndarray) -> WarmStart:
        settings = self.config.refine
        measured = measured_intensity(frame, self.model, self.device)
        tile = max(4 * settings.window, 16)
        return warm_start(measured, self.previous, popout_volume, self.model, kind=settings.loss,
                          reference=self.reference, threshold=settings.scene_change, tile=tile,
                          blend=settings.warm_blend)

def _support(volume: np.ndarray) -> np.ndarray:
    """Columns holding any material."""
    return np.asarray(volume).sum(axis=0) > 0
