"""Errors of a reconstructed volume against a known truth (simulated specimens).

A reconstruction is judged by these, never by its loss (refinement's tests and benchmarks, and
analysis's comparison with a truth store, share them): depth (height) error per column and
the 3D intersection-over-union of the material at half the material potential.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream3d.specimen import column_height, column_thickness


def occupancy_of(volume: np.ndarray, potential: float) -> np.ndarray:
    """A real volume V (z, y, x) read as material fraction V / potential, clipped to [0, 1]."""
    return np.clip(np.real(np.asarray(volume, dtype=np.complex64 if np.iscomplexobj(volume)
                                      else np.float32)) / potential, 0.0, 1.0)


def depth_error(volume: np.ndarray, occupancy: np.ndarray, *, potential: float,
                dz: float) -> float:
    """Mean |height error| (Å) over columns where both the truth and the reconstruction hold at
    least half a slice of material; NaN when there are none. Heights are column centres of mass
    above the exit plane."""
    recon = occupancy_of(volume, potential)
    both = ((column_thickness(occupancy, dz) >= dz / 2)
            & (column_thickness(recon, dz) >= dz / 2))
    if not both.any():
        return float("nan")
    error = np.abs(column_height(recon, dz) - column_height(occupancy, dz))
    return float(error[both].mean())


def iou(volume: np.ndarray, occupancy: np.ndarray, *, potential: float) -> float:
    """3D IoU of {V >= potential / 2} and {truth occupancy >= 1/2}; 1 when both are empty."""
    recon = np.real(np.asarray(volume)) >= potential / 2
    truth = np.asarray(occupancy) >= 0.5
    union = np.count_nonzero(recon | truth)
    return float(np.count_nonzero(recon & truth) / union) if union else 1.0


@dataclass(frozen=True)
class Errors:
    depth: float  # Å, mean column height error
    iou: float  # 3D IoU at half the material potential

    def __str__(self) -> str:
        return f"depth error {self.depth:.1f} Å, IoU {self.iou:.3f}"


def errors(volume: np.ndarray, occupancy: np.ndarray, *, potential: float, dz: float) -> Errors:
    """Both errors of ``volume`` (V) against the true ``occupancy`` of material ``potential``."""
    return Errors(depth_error(volume, occupancy, potential=potential, dz=dz),
                  iou(volume, occupancy, potential=potential))
