"""The data loss over a depth shift x z-scale grid of a volume: the paper's Fig. 1B.

Every grid point moves the whole volume along the beam: material at height z goes to
centre + shift + (z - centre) x scale, with ``centre`` the volume's mass-centre height, so a
shift slides it and a scale stretches it (thicker and with more relief) about its centre.
For the true volume the pixel loss's minimum sits at zero shift and unit scale, in a narrow
valley whose floor the amorphous texture and the noise hide. Beside it, the loss refinement
fits heights by: the Whittle likelihood of every object region's residual spectrum
(:mod:`stream3d.refine.spectral`), whose basin in depth is as wide as the Thon rings allow.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stream3d.config import Config
from stream3d.device import resolve_device
from stream3d.refine import spectral
from stream3d.refine.heights import region_spectra
from stream3d.refine.losses import loss_map
from stream3d.refine.measurement import checked_volume, measured_intensity
from stream3d.refine.model import ImagingModel
from stream3d.refine.zgeometry import shift_scale_z, slice_bottoms


@dataclass(frozen=True)
class Landscape:
    """Data loss (len(scales), len(shifts)) at every shift (Å) and scale of a volume, and the
    spectral loss (the Whittle negative log-likelihood summed over the object regions, same
    shape; None where not computed)."""

    shifts: np.ndarray
    scales: np.ndarray
    loss: np.ndarray
    kind: str  # the loss: "l2" or "poisson"
    spectral: np.ndarray | None = None

    def minimum(self) -> tuple[float, float]:
        """(shift Å, scale) of the lowest loss."""
        i, j = np.unravel_index(int(np.nanargmin(self.loss)), self.loss.shape)
        return float(self.shifts[j]), float(self.scales[i])


def grid_axis(half_range: float, step: float, centre: float = 0.0) -> np.ndarray:
    """centre - half_range ... centre + half_range in ``step``, always containing ``centre``."""
    if half_range < 0 or step <= 0:
        raise ValueError(f"range must be >= 0 and step > 0, got {half_range!r}, {step!r}")
    n = int(np.floor(half_range / step + 1e-9))
    return centre + step * np.arange(-n, n + 1, dtype=np.float64)


def mass_centre(volume: torch.Tensor, dz: float) -> float:
    """Mass-centre height (Å) of the non-negative part of a (nz, ny, nx) volume."""
    positive = volume.clamp_min(0.0)
    heights = slice_bottoms(volume.shape[0], dz, volume) + 0.5 * dz
    mass = float(positive.sum())
    if mass <= 0:
        return 0.5 * volume.shape[0] * dz
    return float((positive * heights).sum()) / mass


@torch.no_grad()
def loss_landscape(frame: np.ndarray, volume: np.ndarray, config: Config, *,
                   shifts: np.ndarray, scales: np.ndarray,
                   device: str | torch.device | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   texture: tuple[float, ...] = ()) -> Landscape:
    """The ``refine.loss`` data loss of ``volume`` (nz, ny, nx) V, moved along z by every
    shift (Å) and scale, against ``frame`` (raw counts, (ny, nx)), and the spectral loss
    (:func:`spectral_loss`; ``texture`` pop-out's measured spectrum, () = measured at the
    first grid point and kept).

    ``progress(done, total)`` is called after every forward evaluation.
    """
    shifts = np.asarray(shifts, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    if shifts.ndim != 1 or scales.ndim != 1 or not shifts.size or not scales.size:
        raise ValueError("shifts and scales must be non-empty 1D sequences")
    if (scales <= 0).any():
        raise ValueError(f"scales must be > 0, got {scales.min():g}")
    dev = resolve_device(config.refine.device if device is None else device)
    model = ImagingModel.from_config(config)
    measured = measured_intensity(frame, model, dev)
    v = checked_volume(volume, tuple(measured.shape), config.sample.slices, dev)
    centre = mass_centre(v, model.dz)
    loss_of = loss_map(config.refine.loss)
    loss = np.empty((scales.size, shifts.size))
    whittle = np.full_like(loss, np.nan)
    texture = tuple(texture)
    # The spectral loss judges the residual of the volume as given (as refinement does: the
    # texture's rings stay where they are; only the expected spectrum's heights move).
    residual_of = model.intensity(v)
    total, done = loss.size, 0
    for i, scale in enumerate(scales):
        for j, shift in enumerate(shifts):
            moved = shift_scale_z(v, shift=float(shift), scale=float(scale), centre=centre,
                                  dz=model.dz)
            modelled = model.intensity(moved)
            loss[i, j] = float(loss_of(modelled, measured, model.counts_per_unit).mean())
            whittle[i, j], texture = spectral_loss(measured, residual_of, moved, model, config,
                                                   texture)
            done += 1
            if progress is not None:
                progress(done, total)
    return Landscape(shifts, scales, loss, config.refine.loss, whittle)


def spectral_loss(measured: torch.Tensor, modelled: torch.Tensor, volume: torch.Tensor,
                  model: ImagingModel, config: Config, texture: tuple[float, ...] = ()
                  ) -> tuple[float, tuple[float, ...]]:
    """(Whittle NLL summed over ``volume``'s object regions at their heights, of the residual
    ``measured`` - ``modelled``; the texture spectrum used): the likelihood refinement's
    heights maximise (the regions of :func:`stream3d.refine.heights.region_spectra`, at zero
    shift). ``texture`` () is measured from the regions' own spectra (a frame and a volume
    carry no pop-out spectrum) and returned, so that every grid point is judged with the same
    one. NaN without material."""
    regions, _, _, lens = region_spectra(
        measured, modelled, (volume / model.potential).clamp(0.0, 1.0).double(), dz=model.dz,
        lens=spectral.lens_from_config(config, texture), counts_per_unit=model.counts_per_unit,
        band=spectral.band(config), potential=model.potential)
    if regions is None:
        return float("nan"), tuple(texture)
    nll, _, _ = spectral.whittle(torch.zeros(regions.count, dtype=torch.float64,
                                             device=regions.window.device), regions)
    return float(nll.sum()), tuple(lens.optics.texture)


def write_csv(landscape: Landscape, path: str | Path) -> Path:
    """One row per grid point: shift_A, scale, loss (and spectral_nll where computed)."""
    path = Path(path)
    extra = landscape.spectral is not None
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["shift_A", "scale", f"loss_{landscape.kind}"]
                        + (["spectral_nll"] if extra else []))
        for i, scale in enumerate(landscape.scales):
            for j, shift in enumerate(landscape.shifts):
                writer.writerow([f"{shift:.6g}", f"{scale:.6g}", f"{landscape.loss[i, j]:.9g}"]
                                + ([f"{landscape.spectral[i, j]:.12g}"] if extra else []))
    return path


def read_csv(path: str | Path) -> Landscape:
    """A landscape written by :func:`write_csv`."""
    with Path(path).open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    kind = rows[0][2].removeprefix("loss_")
    extra = len(rows[0]) > 3
    values = np.array([[float(x) for x in row] for row in rows[1:]])
    shifts, scales = np.unique(values[:, 0]), np.unique(values[:, 1])
    loss = np.full((scales.size, shifts.size), np.nan)
    whittle = np.full_like(loss, np.nan) if extra else None
    rows, cols = np.searchsorted(scales, values[:, 1]), np.searchsorted(shifts, values[:, 0])
    loss[rows, cols] = values[:, 2]
    if extra:
        whittle[rows, cols] = values[:, 3]
    return Landscape(shifts, scales, loss, kind, whittle)


def plot(landscape: Landscape, path: str | Path, *, truth: tuple[float, float] | None = (0.0, 1.0),
         title: str = "") -> Path:
    """Heat map of log10(loss) over shift (Å) x scale, beside the spectral loss (its NLL above
    its minimum) where computed; the truth marked by a red dot and each grid minimum by a white
    cross (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    panels = [(np.log10(np.maximum(landscape.loss, np.finfo(float).tiny)),
               f"log10 {landscape.kind} loss", title or "data loss over depth shift x scale")]
    if landscape.spectral is not None and np.isfinite(landscape.spectral).any():
        panels.append((landscape.spectral - np.nanmin(landscape.spectral),
                       "spectral NLL above its minimum",
                       "texture spectra (Whittle): the loss heights are fitted by"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8), squeeze=False)
    shifts, scales = landscape.shifts, landscape.scales
    dx = (shifts[1] - shifts[0]) / 2 if shifts.size > 1 else 1.0
    dy = (scales[1] - scales[0]) / 2 if scales.size > 1 else 0.01
    for ax, (values, label, heading) in zip(axes[0], panels):
        image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis",
                          extent=(shifts[0] - dx, shifts[-1] + dx, scales[0] - dy,
                                  scales[-1] + dy))
        fig.colorbar(image, ax=ax, label=label)
        i, j = np.unravel_index(int(np.nanargmin(values)), values.shape)
        ax.plot(shifts[j], scales[i], "wx", markersize=10, mew=2, label="grid minimum")
        if truth is not None:
            ax.plot(*truth, "o", color="red", markersize=8, label="true solution")
        ax.set_xlabel("depth shift along the beam (Å)")
        ax.set_ylabel("z scale about the mass centre")
        ax.set_title(heading, fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
