"""Specimens shared by the refinement-step tests (object_scale, object_edges)."""

from __future__ import annotations

import numpy as np

from stream3d.config import Config
from stream3d.simulate import simulate_frame
from stream3d.specimen.shapes import Disc, discs

CONFIG = Config().replace("sample", slices=16, slice_thickness=40.0, absorption=0.0) \
    .replace("refine", device="cpu")
SHAPE = (16, 128, 128)


def two_disc_frame() -> tuple[np.ndarray, np.ndarray]:
    """(occupancy, raw frame): two 80 Å discs at different heights (200 and 420 Å), imaged
    with texture and shot noise."""
    s = CONFIG.sample
    truth = discs(SHAPE, s.sampling, [Disc(40.0, 40.0, 20.0, 200.0, 80.0),
                                      Disc(88.0, 88.0, 20.0, 420.0, 80.0)])
    frame, _ = simulate_frame(truth, CONFIG, seed=5)
    return truth, frame
