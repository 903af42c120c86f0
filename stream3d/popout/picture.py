"""A picture of one pop-out: the frame and its height, thickness and confidence maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream3d.popout.api import PopoutResult


def save_picture(path: str | Path, frame: np.ndarray, result: PopoutResult, *,
                 pixel_size: float, depth: float) -> Path:
    """Write a 4-panel PNG (axes in Å, colour bars with units) and return its path.

    Height is shown only where there is material; ``depth`` (Å) fixes its colour range to the
    cell, so frames of a movie compare by colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ny, nx = frame.shape
    extent = (0.0, nx * pixel_size, ny * pixel_size, 0.0)
    material = result.thickness > 0
    panels = [
        ("frame (counts)", frame, "gray", None, "counts"),
        ("height above exit plane", np.where(material, result.height, np.nan), "viridis",
         (0.0, depth), "Å"),
        ("thickness", result.thickness, "magma", (0.0, None), "Å"),
        ("depth confidence", result.confidence, "cividis", (0.0, 1.0), ""),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.6), constrained_layout=True)
    for ax, (title, data, cmap, limits, unit) in zip(axes, panels):
        lo, hi = limits if limits else (None, None)
        im = ax.imshow(data, cmap=cmap, extent=extent, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
        fig.colorbar(im, ax=ax, shrink=0.85, label=unit)
    if result.message:
        fig.suptitle(result.message, fontsize=9, wrap=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
