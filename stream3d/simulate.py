"""One simulated frame: occupancy -> potential -> multislice -> lens -> detector counts."""

from __future__ import annotations

import numpy as np
import torch

from stream3d.config import Config
from stream3d.device import resolve_device
from stream3d.mtf import mtf_from_config
from stream3d.physics import detect, expected_counts, forward
from stream3d.specimen import occupancy_to_potential
from stream3d.specimen.membrane import add_membranes


def simulate_intensity(potential: np.ndarray | torch.Tensor, config: Config, *,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """Noise-free image intensity (vacuum = 1), float32 (y, x), of a potential (z, y, x) in V,
    as the camera records it: the lens's image with its Fourier transform multiplied by the
    detector's MTF (``detector.mtf``), before any Poisson noise (the noise stays white)."""
    m, s = config.microscope, config.sample
    v = torch.as_tensor(potential, device=resolve_device(device))
    with torch.no_grad():
        intensity = forward(v, sampling=s.sampling, energy=m.energy, defocus=m.defocus, cs=m.cs,
                            aperture=m.aperture, focal_spread=m.focal_spread,
                            astigmatism=m.astigmatism, astigmatism_angle=m.astigmatism_angle,
                            mtf=mtf_from_config(config))
    return intensity.cpu().numpy().astype(np.float32)


def simulate_frame(occupancy: np.ndarray, config: Config, *, seed: int = 0, noise: bool = True,
                   device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Raw detector counts (y, x) float32 and the complex potential (z, y, x) of ``occupancy``.

    The texture and the Poisson noise are drawn from ``seed``; ``noise=False`` returns the
    expected counts (intensity x dose x pixel area) instead of a Poisson draw. The potential
    includes ``sample.membranes`` (their texture drawn from ``seed`` too).
    """
    rng = np.random.default_rng(seed)
    potential = occupancy_to_potential(occupancy, config.sample, rng=rng)
    potential = add_membranes(potential, occupancy, config.sample, rng=rng)
    intensity = torch.from_numpy(simulate_intensity(potential, config, device=device))
    dose, px = config.detector.dose, config.sample.pixel_size
    if noise:
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        counts = detect(intensity, dose=dose, pixel_size=px, generator=gen)
    else:
        counts = expected_counts(intensity, dose=dose, pixel_size=px)
    return counts.numpy().astype(np.float32), potential
