"""2D pictures of a run: metrics over time, height-map montage, orthogonal slices, kymograph.

Every function takes plain arrays, draws one PNG with matplotlib's Agg canvas (no pyplot, no
display) and returns its path. Lengths on axes are nm, times s, potentials V; heights are
above the exit plane. NaN (no material, or a frame not reconstructed) is drawn light grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stream3d.analysis.metrics import MetricsTable

DPI = 110
MIN_POSITION_SPAN_NM = 2.0  # smallest y range of the position panels
NO_DATA = "0.85"  # grey for NaN
STATUS_COLOURS = {"pending": "0.55", "skipped": "tab:orange", "failed": "tab:red", "empty": "tab:purple"}
_COLOUR_WORDS = {"0.55": "grey", "tab:orange": "orange", "tab:red": "red", "tab:purple": "purple"}


def _cmap(name: str):
    return colormaps[name].with_extremes(bad=NO_DATA)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _mark_unanalysed(ax, table: MetricsTable) -> None:
    """Thin vertical bands at frames that hold no numbers, coloured by their status."""
    for t in np.flatnonzero(~table.analysed):
        colour = STATUS_COLOURS.get(table.status[t], "0.55")
        ax.axvline(table.time_s[t], color=colour, lw=1.2, alpha=0.6, zorder=0)


def plot_metrics(table: MetricsTable, path: Path, *,
                 ylimits: dict[str, tuple[float | None, float | None]] | None = None) -> Path:
    """Six panels over time: volume, area, heights, lateral centre, growth rate, parts.

    ``ylimits``: y range of a panel by its first series' name (e.g. shared with another
    report); None ends are automatic."""
    fig = Figure(figsize=(11, 9), layout="constrained")
    axes = fig.subplots(3, 2, sharex=True)
    t, ok = table.time_s, table.analysed
    style = dict(marker="o", ms=3, lw=1.3)
    panels = [
        (axes[0, 0], "material volume (nm³)", [("volume_nm3", None)]),
        (axes[0, 1], "surface area (nm²)", [("area_nm2", None)]),
        (axes[1, 0], "height above exit plane (nm)",
         [("height_max_nm", "top"), ("com_z_nm", "centre of mass"), ("height_min_nm", "bottom")]),
        (axes[1, 1], "lateral centre of mass (nm)", [("com_x_nm", "x"), ("com_y_nm", "y")]),
        (axes[2, 0], "growth rate (nm³/s)", [("growth_rate_nm3_per_s", None)]),
        (axes[2, 1], "connected parts", [("parts", None)]),
    ]
    for ax, label, series in panels:
        for name, legend in series:
            ax.plot(t[ok], table.column(name)[ok], label=legend, **style)
        if not any(np.isfinite(table.column(name)[ok]).any() for name, _ in series):
            ax.text(0.5, 0.5, "no numbers yet", transform=ax.transAxes, ha="center", color="0.4")
        ax.set_ylabel(label)
        lim = (ylimits or {}).get(series[0][0])
        if lim is not None and lim != (None, None):
            ax.set_ylim(*lim)
        ax.grid(alpha=0.3)
        _mark_unanalysed(ax, table)
        if any(legend for _, legend in series):
            ax.legend(fontsize=8, loc="best")
    for ax in (axes[1, 0], axes[1, 1]):
        _min_span(ax, MIN_POSITION_SPAN_NM)
    axes[2, 0].axhline(0.0, color="k", lw=0.8)
    parts = table.column("parts")[ok]
    axes[2, 1].set_ylim(-0.5, (np.nanmax(parts) if parts.size else 0) + 1.5)
    axes[2, 1].yaxis.get_major_locator().set_params(integer=True)
    for ax in axes[2]:
        ax.set_xlabel("time (s)")
    shown = sorted({s for s, a in zip(table.status, ok) if not a})
    note = ", ".join(f"{s} ({_COLOUR_WORDS[STATUS_COLOURS[s]]})" for s in shown if s in STATUS_COLOURS)
    fig.suptitle("Metrics over time" + (f"; lines mark frames without numbers: {note}" if note else ""))
    return _save(fig, path)


def _min_span(ax, span: float) -> None:
    """Widen the y range to at least ``span`` so sub-voxel jitter does not look like motion."""
    lo, hi = ax.get_ylim()
    if hi - lo < span:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - span / 2, mid + span / 2)


def _extent_nm(shape: tuple[int, int], pixel: Sequence[float]) -> list[float]:
    """imshow extent (left, right, bottom, top) in nm for a (y, x) map, y growing downward."""
    ny, nx = shape
    return [0.0, nx * pixel[1] / 10, ny * pixel[0] / 10, 0.0]


def plot_height_montage(maps: Sequence[np.ndarray], titles: Sequence[str], pixel: Sequence[float],
                        path: Path, *, limits: tuple[float, float] | None = None) -> Path:
    """Top-of-material height maps (Å in, nm shown) on a grid with one shared colour bar
    (``limits`` nm: its range, e.g. shared with another report; default: the maps' range)."""
    n = len(maps)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.1 * cols + 1.2, 3.1 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    stack = np.stack(maps) / 10
    finite = stack[np.isfinite(stack)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if limits is not None and None not in limits:
        lo, hi = limits
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    image = None
    for ax, m, title in zip(axes, stack, titles):
        _no_edge_ticks(ax)
        image = ax.imshow(m, cmap=_cmap("viridis"), vmin=lo, vmax=hi,
                          extent=_extent_nm(m.shape, pixel), interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("y (nm)")
    for ax in axes[(rows - 1) * cols:]:
        ax.set_xlabel("x (nm)")
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8,
                 label="height of material top above exit plane (nm)")
    fig.suptitle("Height maps over time (grey: no material)")
    return _save(fig, path)


def _no_edge_ticks(ax) -> None:
    """Fewer ticks, none at the panel's far edges, so labels of neighbouring panels never run
    together ("12.5" of one panel and "0.0" of the next read as "12.50.0")."""
    ax.xaxis.set_major_locator(MaxNLocator(4, prune="upper"))
    ax.yaxis.set_major_locator(MaxNLocator(4, prune="upper"))


def plot_orthoslices(volume: np.ndarray, occupancy: np.ndarray, sampling: Sequence[float],
                     centre: tuple[int, int, int], title: str, path: Path, *,
                     value_label: str = "potential (V)") -> Path:
    """Three orthogonal slices of one volume (V) through voxel ``centre`` = (iz, iy, ix).

    The material boundary (half the material level) is outlined in cyan; side views have the
    height above the exit plane upward, at true aspect ratio.
    """
    dz, dy, dx = (s / 10 for s in sampling)  # nm
    nz, ny, nx = volume.shape
    iz, iy, ix = centre
    v = np.real(np.asarray(volume, dtype=np.complex128 if np.iscomplexobj(volume) else np.float64))
    finite = v[np.isfinite(v)]
    lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if hi - lo < 1e-9:
        hi = lo + 1.0
    depth = nz * dz
    views = [
        (v[iz], occupancy[iz], [0, nx * dx, ny * dy, 0], "x (nm)", "y (nm)",
         f"x-y slice\nat height {(nz - iz - 0.5) * dz:.1f} nm"),
        (v[:, iy, :], occupancy[:, iy, :], [0, nx * dx, 0, depth], "x (nm)", "height (nm)",
         f"x-z slice\nat y = {(iy + 0.5) * dy:.1f} nm"),
        (v[:, :, ix], occupancy[:, :, ix], [0, ny * dy, 0, depth], "y (nm)", "height (nm)",
         f"y-z slice\nat x = {(ix + 0.5) * dx:.1f} nm"),
    ]
    # Equal panel heights at true aspect: each panel's width is its width / height ratio.
    widths = [nx * dx / (ny * dy), nx * dx / depth, ny * dy / depth]
    height = 4.6
    fig = Figure(figsize=(height * sum(widths) + 3.2, height + 1.4), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=widths)
    image = None
    for ax, (img, occ, extent, xl, yl, name) in zip(axes, views, strict=True):
        image = ax.imshow(img, cmap=_cmap("magma"), vmin=lo, vmax=hi, extent=extent,
                          interpolation="nearest", aspect="equal")
        if np.nanmax(occ) > 0.5 > np.nanmin(occ):
            rows, cols = img.shape
            top, bottom = extent[3], extent[2]  # row 0 is drawn at the top
            ys = top + (np.arange(rows) + 0.5) * (bottom - top) / rows
            xs = (np.arange(cols) + 0.5) * (extent[1] / cols)
            ax.contour(xs, ys, occ, levels=[0.5], colors="cyan", linewidths=0.9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(name, fontsize=10)
    # Cross-hairs: where the other two slices cut this one.
    axes[0].axhline((iy + 0.5) * dy, color="w", lw=0.6, ls="--")
    axes[0].axvline((ix + 0.5) * dx, color="w", lw=0.6, ls="--")
    for ax in axes[1:]:
        ax.axhline((nz - iz - 0.5) * dz, color="w", lw=0.6, ls="--")
    axes[1].axvline((ix + 0.5) * dx, color="w", lw=0.6, ls="--")
    axes[2].axvline((iy + 0.5) * dy, color="w", lw=0.6, ls="--")
    fig.colorbar(image, ax=axes.tolist(), shrink=0.85, label=f"{value_label}; cyan: material boundary")
    fig.suptitle(title)
    return _save(fig, path)


def plot_kymograph(distance: np.ndarray, time_s: np.ndarray, heights: np.ndarray,
                   thickness: np.ndarray, reference: np.ndarray, pixel: Sequence[float],
                   line: Sequence[float], reference_title: str, path: Path, *,
                   time_label: str = "time (s)", height_limits: tuple[float, float] | None = None,
                   thickness_limits: tuple[float, float] | None = None) -> Path:
    """Height of the material top and material thickness along a line, against time.

    ``heights`` and ``thickness`` are (t, n) in Å along ``distance`` (Å), NaN rows for frames
    not reconstructed; ``reference`` is a height map (Å) on which the line (Å) is drawn.
    """
    fig = Figure(figsize=(14, 4.8), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1, 1.3, 1.3])
    # One height scale for the map and the height kymograph, so colours mean the same.
    both = np.concatenate([reference[np.isfinite(reference)], heights[np.isfinite(heights)]]) / 10
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    if height_limits is not None and None not in height_limits:
        lo, hi = height_limits
    ax = axes[0]
    ax.imshow(reference / 10, cmap=_cmap("viridis"), extent=_extent_nm(reference.shape, pixel),
              interpolation="nearest", vmin=lo, vmax=hi)
    y0, x0, y1, x1 = (v / 10 for v in line)
    ax.plot([x0, x1], [y0, y1], color="red", lw=1.5)
    ax.annotate("start", (x0, y0), color="red", fontsize=8, xytext=(2, 2),
                textcoords="offset points")
    ax.set(xlabel="x (nm)", ylabel="y (nm)", title=reference_title)
    edges = _edges(time_s)
    s_edges = _edges(distance / 10)
    for ax, data, label, cmap, limits in (
            (axes[1], heights, "height of material top (nm)", "viridis", (lo, hi)),
            (axes[2], thickness, "material thickness (nm)", "cividis",
             thickness_limits or (None, None))):
        mesh = ax.pcolormesh(s_edges, edges, np.ma.masked_invalid(data / 10), cmap=_cmap(cmap),
                             shading="flat", vmin=limits[0], vmax=limits[1],
                             antialiased=False, edgecolors="none")  # no seams between cells
        ax.set_facecolor(NO_DATA)
        ax.set(xlabel="distance along the line (nm)", ylabel=time_label)
        ax.invert_yaxis()  # time runs downward, like reading a movie strip
        fig.colorbar(mesh, ax=ax, label=label)
    axes[1].set_title("Height along the line (grey: no material or no volume)", fontsize=10)
    axes[2].set_title("Thickness along the line", fontsize=10)
    return _save(fig, path)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (for pcolormesh), half a step beyond each end."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
