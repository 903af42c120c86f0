"""Multislice propagation of a plane wave through a 3D potential (Kirkland ch. 6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stream3d.physics import checks
from stream3d.physics.constants import interaction_constant
from stream3d.physics.grids import band_limit, propagator, real_dtype_for


def _transmit(v: torch.Tensor, scale: float, mask: torch.Tensor) -> torch.Tensor:
    """Band-limited exp(i scale v) of one slice [ny, nx]; ``scale`` = sigma dz (rad / V)."""
    if v.is_complex():
        # exp(i s V) = exp(-s Im V) exp(i s Re V): the imaginary part absorbs.
        t = torch.polar(torch.exp(-scale * v.imag), scale * v.real)
    else:
        t = torch.polar(torch.ones_like(v), scale * v)
    # In place on the FFT's fresh output: the mask is a constant, so autograd needs no copy.
    return torch.fft.ifft2(torch.fft.fft2(t).mul_(mask))


def transmission(
    potential: torch.Tensor, *, sampling: Sequence[float], energy: float
) -> torch.Tensor:
    """Band-limited transmission functions exp(i sigma V_i dz) of every slice, [nz, ny, nx].

    ``potential`` is in volts (complex: the imaginary part absorbs); ``sampling`` = (dz, dy, dx) Å.
    """
    checks.tensor("potential", potential, 3)
    dz, dy, dx = checks.sampling3(sampling)
    scale = interaction_constant(checks.positive("energy", energy)) * dz
    mask = band_limit(tuple(potential.shape[-2:]), (dy, dx), real_dtype_for(potential.dtype),
                      potential.device)
    return torch.stack([_transmit(v, scale, mask) for v in potential.unbind(0)])


def multislice(
    potential: torch.Tensor, *, sampling: Sequence[float], energy: float
) -> torch.Tensor:
    """Exit wave [ny, nx] of a unit plane wave through ``potential`` [nz, ny, nx] (V).

    Slice 0 is the entrance. Each slice transmits by exp(i sigma V_i dz), then propagates by dz
    with P(k) = exp(-i pi lambda dz |k|^2); both are band-limited to 2/3 of Nyquist. After the
    last slice the wave is at the exit plane. ``sampling`` = (dz, dy, dx) Å, ``energy`` in eV.
    float32 input computes in complex64, float64 in complex128; the device follows the input.
    Differentiable with torch autograd.
    """
    checks.tensor("potential", potential, 3)
    dz, dy, dx = sampling = checks.sampling3(sampling)
    energy = checks.positive("energy", energy)
    scale = interaction_constant(energy) * dz
    shape = tuple(potential.shape[-2:])
    mask = band_limit(shape, (dy, dx), real_dtype_for(potential.dtype), potential.device)
    # Cached: built once per (shape, sampling, energy, dtype, device), never inside the loop.
    p = propagator(shape, sampling, energy, mask.dtype.to_complex(), potential.device)
    wave = None
    # Slice by slice: per-slice arrays stay small and reuse the allocator's memory, which is
    # faster than one batched transform of the whole volume on a CPU.
    for v in potential.unbind(0):
        t = _transmit(v, scale, mask)
        wave = t if wave is None else wave * t
        wave = torch.fft.ifft2(torch.fft.fft2(wave).mul_(p))
    return wave
