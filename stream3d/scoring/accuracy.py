"""How close a reconstructed volume is to a known specimen: the accuracy suite's metrics.

Pure numpy. A reconstruction is a volume V (z, y, x) in volts; the truth an occupancy (z, y, x)
in [0, 1] of a material of potential ``potential`` (V), on slices ``dz`` Å thick. The
reconstruction is read as material fraction V / potential clipped to [0, 1]. Heights are
centre-of-mass heights (Å) above the exit plane (:func:`stream3d.specimen.column_height`).
A column belongs to a footprint when it holds at least half a slice (dz / 2) of material.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from stream3d.scoring.volume import iou, occupancy_of
from stream3d.specimen import column_height, column_thickness


def _columns(volume: np.ndarray, occupancy: np.ndarray, potential: float, dz: float):
    """(recon occupancy, true thickness Å, recon thickness Å) after checking the shapes."""
    volume, occupancy = np.asarray(volume), np.asarray(occupancy)
    if volume.ndim != 3 or volume.shape != occupancy.shape:
        raise ValueError(f"volume {volume.shape} and occupancy {occupancy.shape} must be the "
                         "same (z, y, x) shape")
    if not potential > 0 or not dz > 0:
        raise ValueError(f"potential ({potential} V) and dz ({dz} Å) must be > 0")
    recon = occupancy_of(volume, potential)
    return recon, column_thickness(occupancy, dz), column_thickness(recon, dz)


def footprint(occupancy: np.ndarray, dz: float) -> np.ndarray:
    """Columns (y, x) holding at least dz / 2 Å of material."""
    return column_thickness(occupancy, dz) >= dz / 2


def height_error(volume: np.ndarray, occupancy: np.ndarray, *, potential: float,
                 dz: float) -> float:
    """Mean |height(recon) - height(truth)| (Å) over the true footprint's columns.

    A true column with less than dz / 2 of reconstructed material counts as the full cell
    depth (slices x dz): missing material is as wrong as it can be. NaN when the truth is
    empty.
    """
    recon, t_true, t_recon = _columns(volume, occupancy, potential, dz)
    true_fp = t_true >= dz / 2
    if not true_fp.any():
        return float("nan")
    depth = occupancy.shape[0] * dz
    with np.errstate(invalid="ignore"):
        error = np.abs(column_height(recon, dz) - column_height(occupancy, dz))
    error = np.where(t_recon >= dz / 2, error, depth)
    return float(error[true_fp].mean())


def footprint_iou(volume: np.ndarray, occupancy: np.ndarray, *, potential: float,
                  dz: float) -> float:
    """2D IoU of the reconstructed and the true footprints; 1 when both are empty."""
    _, t_true, t_recon = _columns(volume, occupancy, potential, dz)
    a, b = t_recon >= dz / 2, t_true >= dz / 2
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def thickness_error(volume: np.ndarray, occupancy: np.ndarray, *, potential: float,
                    dz: float) -> float:
    """Mean |thickness(recon) - thickness(truth)| (Å) over the union of both footprints;
    0 when both are empty."""
    _, t_true, t_recon = _columns(volume, occupancy, potential, dz)
    union = (t_true >= dz / 2) | (t_recon >= dz / 2)
    if not union.any():
        return 0.0
    return float(np.abs(t_recon - t_true)[union].mean())


def core_thickness_error(volume: np.ndarray, occupancy: np.ndarray, *, potential: float,
                         dz: float, core: float = 0.5) -> float:
    """Relative error (signed, e.g. -0.4 = 40 % too thin) of the mean reconstructed thickness
    over the true object's core: columns whose true thickness is >= ``core`` x the thickest.
    Meant for one thick object (the 300 Å particle). NaN when the truth is empty."""
    _, t_true, t_recon = _columns(volume, occupancy, potential, dz)
    if not t_true.max() > 0:
        return float("nan")
    inside = t_true >= core * t_true.max()
    return float(t_recon[inside].mean() / t_true[inside].mean() - 1.0)


def mass_ratio(volume: np.ndarray, occupancy: np.ndarray, *, potential: float) -> float:
    """sum(Re V) / (potential x sum(occupancy)): the reconstructed material over the true
    material (1 = right, > 1 too much); NaN when the truth is empty."""
    volume, occupancy = np.asarray(volume), np.asarray(occupancy)
    if volume.shape != occupancy.shape:
        raise ValueError(f"volume {volume.shape} and occupancy {occupancy.shape} differ")
    true = float(np.sum(occupancy, dtype=np.float64)) * potential
    return float(np.sum(np.real(volume), dtype=np.float64) / true) if true > 0 else float("nan")


def layer_recall(volume: np.ndarray, layers: Sequence[np.ndarray], *,
                 potential: float) -> tuple[float, ...]:
    """Per layer: the fraction of its voxels (occupancy >= 0.5) in the shared columns (those
    holding voxels of every layer) that the reconstruction has at V >= potential / 2.
    NaN for every layer when no column is shared."""
    volume = np.asarray(volume)
    masks = [np.asarray(layer) >= 0.5 for layer in layers]
    if not masks or any(m.shape != volume.shape for m in masks):
        raise ValueError(f"every layer must have the volume's shape {volume.shape}")
    shared = np.logical_and.reduce([m.any(axis=0) for m in masks])
    if not shared.any():
        return tuple(float("nan") for _ in masks)
    found = np.real(volume) >= potential / 2
    out = []
    for m in masks:
        voxels = m & shared[None]
        out.append(float(np.count_nonzero(voxels & found) / np.count_nonzero(voxels)))
    return tuple(out)


@dataclass(frozen=True)
class Accuracy:
    """Every figure of one reconstruction against its truth (units in the field comments)."""

    height_error: float  # Å, mean over the true footprint (missing material = full depth)
    iou: float  # 3D IoU at V >= potential / 2 vs occupancy >= 0.5
    footprint_iou: float  # 2D IoU of footprints (>= dz / 2 of material)
    thickness_error: float  # Å, mean over the union of footprints
    core_thickness: float  # relative error of the thickest object's core thickness
    layer_recall: tuple[float, ...] = field(default=())  # per layer, shared columns only
    mass_ratio: float | None = None  # sum V / (potential x sum occupancy): 1 = the true mass

    def as_dict(self) -> dict:
        d = asdict(self)
        d["layer_recall"] = list(self.layer_recall)
        return d


def accuracy(volume: np.ndarray, occupancy: np.ndarray, *, potential: float, dz: float,
             layers: Sequence[np.ndarray] | None = None) -> Accuracy:
    """All metrics of ``volume`` (V) against ``occupancy``; ``layers`` (separate occupancies of
    overlapping layers, optional) adds the per-layer recall."""
    kw = dict(potential=potential, dz=dz)
    return Accuracy(
        height_error=height_error(volume, occupancy, **kw),
        iou=iou(volume, occupancy, potential=potential),
        footprint_iou=footprint_iou(volume, occupancy, **kw),
        thickness_error=thickness_error(volume, occupancy, **kw),
        core_thickness=core_thickness_error(volume, occupancy, **kw),
        layer_recall=layer_recall(volume, layers, potential=potential) if layers else (),
        mass_ratio=mass_ratio(volume, occupancy, potential=potential),
    )
