"""Exact stand-ins for the pop-out and refine stages, for plumbing tests of the pipeline.

Each volume is an exact function of its own frame (and, for refinement, of the previous
volume: the warm start), so a test can check that frame t's volumes were computed from frame
t and from frame t-1's result, bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PopoutDouble:
    volume: np.ndarray
    height: np.ndarray
    thickness: np.ndarray
    confidence: np.ndarray
    message: str = "double"


def popout_double(frame: np.ndarray, config, *, client=None) -> PopoutDouble:
    nz = config.sample.slices
    plane = (np.asarray(frame, np.float32) / 1000.0).astype(np.float32)
    volume = np.stack([plane * (z + 1) for z in range(nz)]).astype(np.float32)
    zeros = np.zeros(frame.shape, np.float32)
    return PopoutDouble(volume, zeros, zeros, zeros)


def expected_popout(frame: np.ndarray, nz: int) -> np.ndarray:
    plane = (np.asarray(frame, np.float32) / 1000.0).astype(np.float32)
    return np.stack([plane * (z + 1) for z in range(nz)]).astype(np.float32)


@dataclass
class RefineDouble:
    volume: np.ndarray
    loss: float
    loss_history: list
    iterations: int
    seconds: float
    status: str
    warm: bool


class RefinerDouble:
    """volume_t = (popout_t + volume_{t-1}) / 2, loss = mean(frame); ``delay`` s per frame."""

    delay = 0.0

    def __init__(self, config, device=None) -> None:
        self.previous = None

    def refine(self, frame, popout) -> RefineDouble:
        time.sleep(self.delay)
        warm = self.previous is not None
        volume = popout.volume if not warm else ((popout.volume + self.previous) / 2)
        self.previous = volume.astype(np.float32)
        return RefineDouble(self.previous, float(np.mean(frame)), [], 1, self.delay, "converged",
                            warm)
