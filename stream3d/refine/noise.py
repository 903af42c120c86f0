"""The noise level for the discrepancy principle: the data loss the right answer would leave.

A model of homogeneous material cannot reproduce the amorphous texture of a real specimen nor
the shot noise, so even the true shape leaves a loss well above zero. Fitting below that level
fits noise and texture, and makes the depth and shape worse. The expected loss is estimated by
Monte Carlo from the material prior: draw an amorphous texture of the configured rms and
correlation length onto the current volume, image it, draw Poisson counts, and measure the loss
of the untextured volume against that synthetic frame.
"""

from __future__ import annotations

import numpy as np
import torch

from stream3d.refine.losses import LossMap
from stream3d.refine.model import ImagingModel
from stream3d.specimen import amorphous_texture


@torch.no_grad()
def expected_loss_map(model: ImagingModel, volume: torch.Tensor, loss_map: LossMap, *,
                      texture: float, texture_length: float, samples: int = 1,
                      seed: int = 0) -> torch.Tensor:
    """Per-pixel data loss (ny, nx) between ``volume``'s image and synthetic frames of the same
    volume with amorphous texture (relative rms ``texture``, correlation ``texture_length`` Å)
    and Poisson noise at the model's dose, averaged over ``samples`` frames."""
    rng = np.random.default_rng(seed)
    clean = model.intensity(volume)
    total = torch.zeros_like(clean)
    count = max(int(samples), 1)
    for _ in range(count):
        textured = volume
        if texture > 0:
            field = amorphous_texture(tuple(volume.shape), model.sampling,
                                      length=texture_length, rng=rng)
            textured = volume * (1.0 + texture * torch.as_tensor(field, device=volume.device))
        mean_counts = (model.intensity(textured) * model.counts_per_unit).clamp_min(0.0)
        counts = rng.poisson(mean_counts.cpu().numpy().astype(np.float64))
        measured = torch.as_tensor(counts / model.counts_per_unit, dtype=clean.dtype,
                                   device=clean.device)
        total += loss_map(clean, measured, model.counts_per_unit)
    return total / count


def expected_loss(model: ImagingModel, volume: torch.Tensor, loss_map: LossMap, *,
                  texture: float, texture_length: float, samples: int = 1,
                  seed: int = 0) -> float:
    """The mean of :func:`expected_loss_map`: the data loss the right volume would leave."""
    return float(expected_loss_map(model, volume, loss_map, texture=texture,
                                   texture_length=texture_length, samples=samples,
                                   seed=seed).mean())
