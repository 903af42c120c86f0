"""Overlapping square patches on a regular grid, their window, and how they are split into tasks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=16)
def hann_window(patch: int) -> np.ndarray:
    """Separable 2-D Hann window (patch, patch) that never reaches exactly zero (read-only)."""
    w = np.hanning(patch + 2)[1:-1]
    out = np.outer(w, w).astype(np.float32)
    out.setflags(write=False)
    return out


def _starts(n: int, patch: int, step: int) -> np.ndarray:
    """Patch start offsets along one axis: every ``step`` px, the last one flush with the edge."""
    starts = np.arange(0, n - patch + 1, step)
    if starts[-1] != n - patch:
        starts = np.append(starts, n - patch)
    return starts


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of a (ny, nx) frame sit: start offsets (px) along y and x."""

    shape: tuple[int, int]
    patch: int
    starts_y: np.ndarray
    starts_x: np.ndarray

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, columns) of patches."""
        return len(self.starts_y), len(self.starts_x)

    @property
    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Patch centres (px, pixel-centre coordinates) along y and along x."""
        half = (self.patch - 1) / 2
        return self.starts_y + half, self.starts_x + half

    def row_blocks(self, rows_per_task: int) -> list[tuple[int, int]]:
        """[start, stop) ranges of patch rows: one dask task each (fixed, never load-dependent)."""
        n = len(self.starts_y)
        return [(r, min(r + rows_per_task, n)) for r in range(0, n, rows_per_task)]

    def placement(self, axis: int) -> np.ndarray:
        """(patches along ``axis``, frame length) matrix: each row is the 1-D window placed at
        its patch, so ``Wy.T @ values @ Wx`` spreads per-patch values over the frame."""
        starts = self.starts_y if axis == 0 else self.starts_x
        n = self.shape[axis]
        w = np.hanning(self.patch + 2)[1:-1]
        out = np.zeros((len(starts), n))
        for i, s in enumerate(starts):
            out[i, s:s + self.patch] = w
        return out


def patch_grid(shape: tuple[int, int], patch: int, step: int) -> PatchGrid:
    """The grid of ``patch`` px patches every ``step`` px covering a frame of ``shape``."""
    ny, nx = shape
    if min(ny, nx) < patch:
        raise ValueError(f"patch {patch} px does not fit a {ny}x{nx} frame")
    return PatchGrid((ny, nx), patch, _starts(ny, patch, step), _starts(nx, patch, step))


def windowed_patches(image: np.ndarray, grid: PatchGrid, rows: tuple[int, int]) -> np.ndarray:
    """Mean-subtracted, Hann-windowed patches of patch rows [start, stop), (n, patch, patch).

    ``image`` is the whole frame; only the rows the block needs are read.
    """
    p = grid.patch
    ys = grid.starts_y[rows[0]:rows[1]]
    xs = grid.starts_x
    # Strided views of the block, then a fancy-index gather: one copy, no Python loop per
    # patch; float32 and in place, because large temporaries cost page faults in dask workers.
    view = np.lib.stride_tricks.sliding_window_view(image, (p, p))
    out = view[ys[:, None], xs[None, :]].reshape(-1, p, p).astype(np.float32, copy=False)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out *= hann_window(p)
    return out
