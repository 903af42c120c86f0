"""What one refinement returns: the volume, its data loss, and how the optimiser stopped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Every status a refinement can end with, and what it means.
STATUSES = {
    "noise-level": "the data loss reached the expected loss at the truth (discrepancy principle)",
    "plateau": "the objective stopped improving",
    "settled": "the material (thickness and heights) stopped moving",
    "max-iterations": "the iteration budget ran out",
    "diverged": "a step raised the objective far above the best so far; the best volume is kept",
    "nan": "NaN or infinity appeared in the loss or gradient; the best volume is kept",
    "popout-only": "refine.iterations = 0: the volume is the initial (pop-out) volume",
    "empty": "the start volume holds no material (a vacuum or solvent-only frame): empty volume",
}


@dataclass
class RefineResult:
    """The refined volume of one frame.

    ``volume`` is (nz, ny, nx) float32, the real part V (volts) of the potential; the absorptive
    part is ``sample.absorption`` times it. ``loss`` is the final data loss (the configured kind,
    on dose-normalised intensity), ``loss_history`` the data loss at every optimiser iteration,
    ``seconds`` the wall time, ``warm`` whether the start was the previous frame's volume.
    """

    volume: np.ndarray
    loss: float
    loss_history: list[float]
    iterations: int
    seconds: float
    status: str
    warm: bool
    noise_level: float = float("nan")  # expected data loss at the truth (same units as loss)
    evaluations: int = 0  # forward-model evaluations, depth search included
    regions: int = 0  # regions whose depth was searched
    shifts: list[float] = field(default_factory=list)  # Å, depth shift found for each region
    height_errors: list[float] = field(default_factory=list)  # Å, its standard error (Fisher)
    scales: list[float] = field(default_factory=list)  # relief stretch found for each region
    thickness_scales: list[float] = field(default_factory=list)  # thickness factor per region
    message: str = ""  # one line for the user: what happened, why it stopped
