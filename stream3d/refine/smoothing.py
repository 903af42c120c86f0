"""Gaussian smoothing of (ny, nx) maps on the torch device (differentiable)."""

from __future__ import annotations

import torch

#: Sigmas: the kernel is cut at this radius (rounded to a pixel), where the Gaussian has fallen
#: to 1 % of its peak. A conventional cut, not measured (scipy's default is 4).
TRUNCATE = 3


def gaussian_blur(values: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (``sigma`` px) of a (ny, nx) tensor, edges replicated."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = torch.nn.functional.pad(values[None, None], (radius, radius, radius, radius),
                                  mode="replicate")
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, -1))
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1))
    return out[0, 0]
