"""Side-by-side pictures of a run against its ground truth: truth, pop-out and refined volume
at a few frames, as x-z and y-z sections through the objects and as height maps.

Every panel of a picture shares one colour scale (material fraction V / sample.potential,
0 to 1; heights in nm) and one height exaggeration, and the truth's material boundary is
outlined (cyan) on every panel, so differences are differences of the data, not of the
drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stream3d.analysis.maps import MATERIAL, top_bottom

DPI = 100
NO_DATA = "0.85"
SOURCES = ("truth", "pop-out", "refined")
SECTION_HEIGHT_PER_WIDTH = 0.6  # drawn section height / width (sets the exaggeration)


@dataclass(frozen=True)
class FrameVolumes:
    """One frame of the comparison: store index, title, and the occupancies (z, y, x) of truth,
    pop-out and refined (None where that volume does not exist / was not reconstructed)."""

    t: int
    title: str
    volumes: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


def exaggeration(depth_nm: float, width_nm: float) -> float:
    """Height exaggeration that draws a section SECTION_HEIGHT_PER_WIDTH as tall as wide."""
    return SECTION_HEIGHT_PER_WIDTH * width_nm / depth_nm


def _section_lines(truth: np.ndarray) -> tuple[int, int]:
    """(row y, column x) crossing the most truth material: the sections go through objects."""
    material = truth > MATERIAL
    if not material.any():
        return truth.shape[1] // 2, truth.shape[2] // 2
    return (int(np.argmax(material.sum(axis=(0, 2)))), int(np.argmax(material.sum(axis=(0, 1)))))


def plot_sections(frames: Sequence[FrameVolumes], sampling: Sequence[float], axis: str,
                  path: Path) -> Path:
    """x-z (``axis`` = "x") or y-z (``axis`` = "y") sections: rows frames, columns sources."""
    dz, dy, dx = (s / 10 for s in sampling)  # nm
    nz, ny, nx = next(v for v in frames[0].volumes if v is not None).shape
    width = nx * dx if axis == "x" else ny * dy
    depth = nz * dz
    ex = exaggeration(depth, width)
    cols = len(SOURCES)
    fig = Figure(figsize=(4.2 * cols + 1.4, 4.2 * SECTION_HEIGHT_PER_WIDTH * len(frames) + 1.2),
                 layout="constrained")
    axes = fig.subplots(len(frames), cols, squeeze=False, sharex=True, sharey=True)
    cmap = colormaps["magma"].with_extremes(bad=NO_DATA)
    image = None
    for row, fv in zip(axes, frames):
        truth = fv.volumes[0]
        iy, ix = _section_lines(truth)
        for ax, name, vol in zip(row, SOURCES, fv.volumes):
            ax.xaxis.set_major_locator(MaxNLocator(4, prune="upper"))
            ax.yaxis.set_major_locator(MaxNLocator(4, prune="upper"))
            if vol is None:
                ax.set_facecolor(NO_DATA)
                ax.text(0.5, 0.5, "not reconstructed", transform=ax.transAxes, ha="center",
                        color="0.3")
            else:
                cut = vol[:, iy, :] if axis == "x" else vol[:, :, ix]
                image = ax.imshow(cut, cmap=cmap, vmin=0.0, vmax=1.0,
                                  extent=[0, width, 0, depth], aspect=ex,
                                  interpolation="nearest")
            tcut = truth[:, iy, :] if axis == "x" else truth[:, :, ix]
            if tcut.max() > MATERIAL > tcut.min():
                n = tcut.shape[1]
                xs = (np.arange(n) + 0.5) * width / n
                hs = depth - (np.arange(nz) + 0.5) * dz
                ax.contour(xs, hs, tcut, levels=[MATERIAL], colors="cyan", linewidths=0.8)
            ax.set_xlim(0, width)
            ax.set_ylim(0, depth)
            where = f"y = {(iy + 0.5) * dy:.1f} nm" if axis == "x" else f"x = {(ix + 0.5) * dx:.1f} nm"
            ax.set_title(f"{name}, {fv.title}\n{axis}-z section at {where}", fontsize=9)
        row[0].set_ylabel("height (nm)")
    for ax in axes[-1]:
        ax.set_xlabel(f"{axis} (nm)")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7,
                     label="material fraction V / sample.potential; cyan: truth boundary")
    fig.suptitle(f"{axis}-z sections: truth, pop-out and refined side by side "
                 f"(one colour scale; height drawn x{ex:.2g})")
    fig.savefig(path, dpi=DPI)
    return path


def plot_height_maps(frames: Sequence[FrameVolumes], sampling: Sequence[float],
                     path: Path) -> Path:
    """Height of the material top (nm) of each source at each frame, one colour scale."""
    dz, dy, dx = sampling
    tops = [[None if v is None else top_bottom(v, dz)[0] / 10 for v in fv.volumes]
            for fv in frames]
    finite = np.concatenate([m[np.isfinite(m)] for row in tops for m in row if m is not None]
                            or [np.zeros(0)])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    nz, ny, nx = next(v for v in frames[0].volumes if v is not None).shape
    extent = [0, nx * dx / 10, ny * dy / 10, 0]
    cols = len(SOURCES)
    fig = Figure(figsize=(3.6 * cols + 1.4, 3.5 * len(frames) + 0.8), layout="constrained")
    axes = fig.subplots(len(frames), cols, squeeze=False, sharex=True, sharey=True)
    cmap = colormaps["viridis"].with_extremes(bad=NO_DATA)
    image = None
    for row, fv, maps in zip(axes, frames, tops):
        for ax, name, m in zip(row, SOURCES, maps):
            ax.xaxis.set_major_locator(MaxNLocator(4, prune="upper"))
            ax.yaxis.set_major_locator(MaxNLocator(4, prune="upper"))
            if m is None:
                ax.set_facecolor(NO_DATA)
                ax.text(0.5, 0.5, "not reconstructed", transform=ax.transAxes, ha="center")
                continue
            image = ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi, extent=extent,
                              interpolation="nearest")
            ax.set_title(f"{name}, {fv.title}", fontsize=9)
        row[0].set_ylabel("y (nm)")
    for ax in axes[-1]:
        ax.set_xlabel("x (nm)")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7,
                     label="height of the material top above the exit plane (nm)")
    fig.suptitle("Height maps: truth, pop-out and refined (one colour scale; grey: no material)")
    fig.savefig(path, dpi=DPI)
    return path
