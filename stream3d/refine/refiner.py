"""One ``Refiner`` per stream: refines each frame, warm-started from the previous volume."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from stream3d.config import Config
from stream3d.device import resolve_device
from stream3d.errors import UserError
from stream3d.refine.losses import loss_map
from stream3d.refine.measurement import measured_intensity, uniform_volume
from stream3d.refine.model import ImagingModel
from stream3d.refine.noise import expected_loss
from stream3d.refine.pipeline import refine_volume
from stream3d.refine.result import RefineResult
from stream3d.refine.warmstart import warm_start

if TYPE_CHECKING:  # pop-out is built beside this package; only its volume is used here
    from stream3d.popout import PopoutResult


class Refiner:
    """Refines the frames of one stream in order, each starting from the previous volume.

    The first frame (and any frame after :meth:`reset`, or after a scene change detected from
    the data loss) starts from ``refine.init``: pop-out's volume or a uniform one. Material may
    only appear within ``refine.support_margin`` pixels of pop-out's support or the previous
    volume's.
    """

    def __init__(self, config: Config, device: str | torch.device | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.refine.device if device is None else device)
        self.model = ImagingModel.from_config(config)
        self.previous: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous volume: the next frame starts cold."""
        self.previous = None

    def refine(self, frame: np.ndarray, popout: "PopoutResult") -> RefineResult:
        """Refine one frame (raw counts (y, x)) given pop-out's result for it."""
        settings = self.config.refine
        popout_volume = np.asarray(popout.volume, dtype=np.float32)
        if popout_volume.ndim != 3 or popout_volume.shape[1:] != np.shape(frame):
            raise UserError(f"pop-out volume shape {popout_volume.shape} does not match the "
                            f"frame {np.shape(frame)}")
        start, warm, search_shift = self._cold_start(frame, popout_volume), False, None
        if self.previous is not None and self.previous.shape == popout_volume.shape \
                and settings.iterations > 0:
            start, warm, changed = self._warm_start(frame, popout_volume)
            if changed > 0:  # pop-out's columns in the start: search them as widely as cold
                search_shift = settings.search_shift
        support = _support(popout_volume)
        if warm:
            support |= _support(self.previous)
        result = refine_volume(frame, start, self.config, device=self.device,
                               support=support if support.any() else None, warm=warm,
                               search_shift=search_shift)
        self.previous = result.volume
        return result

    def _cold_start(self, frame: np.ndarray, popout_volume: np.ndarray) -> np.ndarray:
        if self.config.refine.init == "uniform":
            return uniform_volume(frame, self.model, self.config.sample.slices)
        return popout_volume

    def _warm_start(self, frame: np.ndarray,
                    popout_volume: np.ndarray) -> tuple[np.ndarray, bool, float]:
        settings = self.config.refine
        measured = measured_intensity(frame, self.model, self.device)
        previous = torch.as_tensor(self.previous, device=self.device)
        expected = expected_loss(self.model, previous, loss_map(settings.loss),
                                 texture=self.config.sample.texture,
                                 texture_length=self.config.sample.texture_length,
                                 samples=1, seed=settings.seed)
        tile = max(4 * settings.window, 16)
        start = warm_start(measured, self.previous, popout_volume, self.model, kind=settings.loss,
                           expected=expected, threshold=settings.scene_change, tile=tile)
        volume = start.volume if start.warm else self._cold_start(frame, popout_volume)
        return volume, start.warm, start.changed


def _support(volume: np.ndarray) -> np.ndarray:
    """Columns holding any material."""
    return np.asarray(volume).sum(axis=0) > 0
