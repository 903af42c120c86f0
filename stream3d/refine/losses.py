"""Data losses between simulated intensity and a measured, dose-normalised frame.

Both are per-pixel maps first (the depth search needs the loss of a window around a region),
then means. ``l2``: squared difference of intensities (vacuum = 1); a correct model leaves the
Poisson variance, about 1 / (dose x pixel area). ``poisson``: the Poisson deviance per pixel in
counts, 2 [n log(n / mu) - (n - mu)], whose expectation at the truth is about 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Floor for the simulated mean counts in the Poisson deviance (counts); keeps log finite.
MIN_COUNTS = 1e-3


def l2_map(simulated: torch.Tensor, measured: torch.Tensor, counts_per_unit: float) -> torch.Tensor:
    """(I_sim - I_meas)^2 per pixel; intensities are dose-normalised (vacuum = 1)."""
    return (simulated - measured).square()


def poisson_map(simulated: torch.Tensor, measured: torch.Tensor,
                counts_per_unit: float) -> torch.Tensor:
    """Poisson deviance per pixel of counts n = I_meas c given means mu = I_sim c (c = counts
    per unit intensity); 0 for a perfect fit, about 1 per pixel for the right model."""
    mu = (simulated * counts_per_unit).clamp_min(MIN_COUNTS)
    n = (measured * counts_per_unit).clamp_min(0.0)
    # n log(n / mu) -> 0 as n -> 0: xlogy handles the empty pixels exactly.
    return 2.0 * (torch.xlogy(n, n) - torch.xlogy(n, mu) - (n - mu))


LossMap = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

#: The data losses ``refine.loss`` can name.
LOSSES: dict[str, LossMap] = {"l2": l2_map, "poisson": poisson_map}


def loss_map(kind: str) -> LossMap:
    """The per-pixel loss function called ``kind`` (a key of :data:`LOSSES`)."""
    try:
        return LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown loss {kind!r} (known: {', '.join(LOSSES)})") from None
