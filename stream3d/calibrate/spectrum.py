"""Power spectra of frames: Welch averages of Hann-windowed tiles, on the rfft half plane."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: Variance inflation of a least-squares fit to a Hann-windowed periodogram: neighbouring
#: frequencies are correlated (coefficient 4/9 next door, 1/36 two away, per axis), so a fit
#: over N pixels has about N / 3.8 independent ones.
HANN_CORRELATION = (1 + 2 * 4 / 9 + 2 / 36) ** 2


@dataclass(frozen=True)
class Spectrum:
    """Average power spectrum of tiles (``tile`` x ``tile`` px) on the rfft grid.

    ``power`` (tile, tile // 2 + 1) is the mean |FFT(window x (I / <I> - 1))|^2 / sum(window^2)
    of contrast I / <I> - 1 (dimensionless, per frequency pixel); ``pixel_size`` Å; ``tiles``
    the number of tiles averaged (over all frames).
    """

    power: np.ndarray
    pixel_size: float
    tiles: int
    mean_counts: float  # mean counts per pixel of the frames the spectrum came from

    @property
    def tile(self) -> int:
        return int(self.power.shape[0])

    def frequencies(self) -> tuple[np.ndarray, np.ndarray]:
        """(ky (tile, 1), kx (1, tile // 2 + 1)) in Å^-1 on the rfft grid."""
        ky = np.fft.fftfreq(self.tile, d=self.pixel_size)[:, None]
        kx = np.fft.rfftfreq(self.tile, d=self.pixel_size)[None, :]
        return ky, kx


def hann2d(n: int) -> np.ndarray:
    """Separable periodic-free Hann window (n, n), float64."""
    w = np.hanning(n)
    return w[:, None] * w[None, :]


def tile_starts(length: int, tile: int) -> list[int]:
    """Starts of tiles of ``tile`` px covering ``length`` px with about 50 % overlap."""
    if length < tile:
        raise ValueError(f"a frame of {length} px is smaller than the {tile} px tile")
    count = max(1, int(np.ceil((length - tile) / (tile / 2))) + 1)
    return sorted({int(round(s)) for s in np.linspace(0, length - tile, count)})


def choose_tile(shape: Sequence[int], tile: int | None = None) -> int:
    """The tile size: ``tile`` if given, else the largest power of two <= 2/3 of the smaller side,
    within [64, 512] (fine enough to resolve dense rings, several tiles to average)."""
    if tile is not None:
        if tile < 32 or tile > min(shape):
            raise ValueError(f"tile {tile} px must be >= 32 and fit in the frame {tuple(shape)}")
        return int(tile)
    side = min(shape)
    if side < 64:
        raise ValueError(f"frame {tuple(shape)} is too small to calibrate (need >= 64 px)")
    t = 1 << int(np.floor(np.log2(max(side / 1.5, 64))))
    return int(min(max(t, 64), 512))


def frame_power(frame: np.ndarray, tile: int, *,
                bare: float | None = None) -> tuple[np.ndarray, int, float]:
    """(sum of tile periodograms, number of tiles, mean counts) of one frame (y, x).

    ``bare``: only that share of the tiles (at least one) with the least windowed contrast
    variance, e.g. a support membrane's bare areas: their Thon rings come from the membrane
    alone, at a height that does not change, while a growing specimen's share of the other
    tiles (and with it their mixed rings) does.
    """
    data = np.asarray(frame, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"a frame must be 2D (y, x), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("the frame has non-finite pixels (NaN or inf)")
    mean = float(data.mean())
    if not mean > 0:
        raise ValueError(f"the frame's mean counts are {mean:g}; calibrate needs positive counts")
    contrast = data / mean - 1.0
    window = hann2d(tile)
    norm = float((window**2).sum())

    def piece(y: int, x: int) -> np.ndarray:
        p = contrast[y:y + tile, x:x + tile]
        return (p - p.mean()) * window

    starts = [(y, x) for y in tile_starts(data.shape[0], tile)
              for x in tile_starts(data.shape[1], tile)]
    if bare is not None:  # the variance is the periodogram's sum (Parseval): no FFT needed
        variance = [float((piece(y, x) ** 2).sum()) for y, x in starts]
        keep = max(int(round(bare * len(starts))), 1)
        starts = [starts[i] for i in np.argsort(variance, kind="stable")[:keep]]
    total = np.zeros((tile, tile // 2 + 1))
    for y, x in starts:
        total += np.abs(np.fft.rfft2(piece(y, x))) ** 2 / norm
    return total, len(starts), mean


def power_spectrum(frames: Iterable[np.ndarray], *, pixel_size: float,
                   tile: int | None = None, bare: float | None = None) -> Spectrum:
    """Average power spectrum of one or more frames (y, x) of raw counts at ``pixel_size`` Å;
    ``bare``: of each frame only that share of its tiles with least contrast (see
    :func:`frame_power`)."""
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be > 0 Å, got {pixel_size!r}")
    total, count, means, size = None, 0, [], None
    for frame in frames:
        frame = np.asarray(frame)
        if size is None:
            size = choose_tile(frame.shape, tile)
        power, n, mean = frame_power(frame, size, bare=bare)
        total = power if total is None else total + power
        count += n
        means.append(mean)
    if total is None:
        raise ValueError("no frames to calibrate on")
    return Spectrum(total / count, float(pixel_size), count, float(np.mean(means)))


def crop_region(frame: np.ndarray, region: tuple[int, int, int, int] | None) -> np.ndarray:
    """The pixels [y0:y1, x0:x1] of ``frame``, or all of it; a region outside is an error."""
    if region is None:
        return frame
    y0, x0, y1, x1 = region
    ny, nx = frame.shape[-2:]
    if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
        raise ValueError(f"region {y0},{x0},{y1},{x1} is not inside the {ny}x{nx} frame "
                         "(y0,x0,y1,x1 with 0 <= y0 < y1 <= ny, 0 <= x0 < x1 <= nx)")
    return frame[..., y0:y1, x0:x1]
