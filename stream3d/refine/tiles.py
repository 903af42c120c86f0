"""Tiles of a frame for refinement with memory bounded by the tile, not the frame.

Pure arithmetic, no torch. Refinement's memory grows with the pixels it models (about 6 kB
per pixel on a CPU with 32 slices: the autograd record of every slice), so a detector-size
frame is refined as overlapping square crops ("tiles"): each crop is refined on its own, and
the stitched volume takes every pixel from the one tile whose *interior* holds it.

Why a halo: a pixel of the image depends on the specimen within the lens's point spread
(the delocalisation) and the spread of the wave through the cell, and the FFT multislice is
periodic, so a crop's edges wrap onto each other. A halo of :func:`halo_px` pixels around
each interior holds everything the interior's image depends on and keeps the wrap-around
outside it. Measured (tests/test_refine_tiles.py): taking interiors only leaves no seam in
column height or thickness; blending the overlap is not needed.

Plan along one axis of N px with tiles of at most T px and halo H (T > 2H): at least
n = ceil((N - 2H) / (T - 2H)) tiles, or up to 3 more where that makes less crop in all (time
and memory follow the crops' pixels); interiors split the frame evenly (the first and last are H px
longer: a frame edge needs no halo, it is an edge of the untiled model too); every crop is
the same size (the smallest that holds its interior and halo, rounded up to a product of 2,
3, 5 and 7: measured, a 464 px FFT (16 x 29) takes 3-6x longer per pixel than a 480 px one)
and lies inside the frame. Frames no larger than T are one tile: no halo, no overhead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stream3d.errors import UserError
from stream3d.optics import band_limit_cutoff, wavelength

#: px, extra halo for the refinement's own reach beyond the optics: its per-column thickness
#: change is smoothed by a Gaussian of sigma 2 px (3 sigma = 6 px), plus 2 px to spare.
FIT_REACH_PX = 8

#: Crop edges are rounded up to products of these primes: FFTs of other sizes are slow.
FFT_PRIMES = (2, 3, 5, 7)

#: Tile counts tried beyond the fewest (the module doc's "up to 3 more"): rounding crops up to
#: FFT sizes can make more, smaller tiles cheaper; the 2048 px example needs one more.
EXTRA_TILES = 3

#: px: an optics term whose halo is smaller than this is ordinary and not named in the error
#: for a too-small refine.tile (a round figure for a message; not measured).
ORDINARY_HALO_PX = 64

#: px of interior the too-small-tile error suggests beyond the two halos (a round figure).
SUGGESTED_INTERIOR_PX = 16


@dataclass(frozen=True)
class Tile:
    """One tile: its crop (what is refined) and its interior (what is kept), as half-open
    (start, stop) pixel ranges along y and x of the frame."""

    crop_y: tuple[int, int]
    crop_x: tuple[int, int]
    inner_y: tuple[int, int]
    inner_x: tuple[int, int]

    @property
    def crop(self) -> tuple[slice, slice]:
        """Slices of the frame (y, x) refined by this tile."""
        return slice(*self.crop_y), slice(*self.crop_x)

    @property
    def inner(self) -> tuple[slice, slice]:
        """Slices of the frame (y, x) this tile's result fills."""
        return slice(*self.inner_y), slice(*self.inner_x)

    @property
    def inner_in_crop(self) -> tuple[slice, slice]:
        """The interior as slices of the crop."""
        (y0, _), (x0, _) = self.crop_y, self.crop_x
        return (slice(self.inner_y[0] - y0, self.inner_y[1] - y0),
                slice(self.inner_x[0] - x0, self.inner_x[1] - x0))


def reach_angstrom(*, energy: float, defocus: float, cs: float, aperture: float,
                   cell: float, pixel_size: float, astigmatism: float = 0.0) -> float:
    """How far (Å) a point of the specimen spreads in the image, at the highest spatial
    frequency k_max (Å^-1) the model transmits: the smaller of the 2/3-Nyquist band limit and
    the objective aperture (mrad).

    Lens delocalisation lambda |df| k_max + lambda^3 Cs k_max^3 (the gradient of chi / 2 pi at
    k_max) for the worst effective defocus in the cell (material at height h in [0, cell] Å is
    seen at defocus - h; astigmatism C12 adds up to C12), plus the propagation spread through
    the cell, lambda cell k_max. Energy in eV, lengths in Å.
    """
    lam = wavelength(energy)
    k_max = band_limit_cutoff((pixel_size, pixel_size))
    if aperture > 0:
        k_max = min(k_max, aperture * 1e-3 / lam)
    worst_defocus = max(abs(defocus), abs(defocus - cell)) + abs(astigmatism)
    delocalisation = lam * worst_defocus * k_max + lam**3 * cs * k_max**3
    return delocalisation + lam * cell * k_max


def halo_px(config) -> int:
    """Halo (px) each tile needs around its interior, from the config's optics and cell."""
    m, s = config.microscope, config.sample
    reach = reach_angstrom(energy=m.energy, defocus=m.defocus, cs=m.cs, aperture=m.aperture,
                           cell=s.slices * s.slice_thickness, pixel_size=s.pixel_size,
                           astigmatism=m.astigmatism)
    return math.ceil(reach / s.pixel_size) + FIT_REACH_PX


def check_tile(config) -> None:
    """One clear error when ``refine.tile`` leaves no interior inside the halos (checked when
    a refiner is built, before any frame arrives)."""
    tile, halo = config.refine.tile, halo_px(config)
    if 0 < tile <= 2 * halo:
        raise UserError(_too_small(tile, halo) + _halo_cause(config))


def _halo_cause(config) -> str:
    """Which optics key makes the halo large, when one does (so that a mistyped defocus or Cs
    is named rather than refine.tile alone)."""
    m, s = config.microscope, config.sample
    lam = wavelength(m.energy)
    k_max = band_limit_cutoff((s.pixel_size, s.pixel_size))
    if m.aperture > 0:
        k_max = min(k_max, m.aperture * 1e-3 / lam)
    terms = {"microscope.defocus": (lam * abs(m.defocus) * k_max, m.defocus),
             "microscope.cs": (lam**3 * m.cs * k_max**3, m.cs),
             "microscope.astigmatism": (lam * m.astigmatism * k_max, m.astigmatism)}
    key, (reach, value) = max(terms.items(), key=lambda item: item[1][0])
    if reach / s.pixel_size < ORDINARY_HALO_PX:
        return ""
    return f"; the halo comes from {key} = {value:g} Å: is that value meant?"


def _too_small(tile: int, halo: int) -> str:
    least = 2 * halo + SUGGESTED_INTERIOR_PX
    return (f"refine.tile = {tile} px leaves no interior inside the halo of {halo} px each side "
            f"(lens delocalisation and propagation spread): use refine.tile >= {least} "
            "or 0 (whole frame)")


def axis_plan(size: int, tile: int, halo: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(crop, interior) ranges along one axis of ``size`` px: tiles of at most ``tile`` px with
    ``halo`` px around every interior (see the module doc). ``tile`` 0 = one tile."""
    if tile <= 0 or size <= tile:
        return [((0, size), (0, size))]
    if tile <= 2 * halo:
        raise UserError(_too_small(tile, halo))
    fewest = math.ceil((size - 2 * halo) / (tile - 2 * halo))
    # Rounding crops up to FFT sizes can make one more tile cheaper (2048 px: 6 of 392 px,
    # 2352 px of crops, against 5 of 480 px, 2400): take the least total crop length.
    n = min(range(fewest, fewest + EXTRA_TILES + 1), key=lambda k: k * _crop(size, k, tile, halo))
    middle = (size - 2 * halo) / n  # interior of a middle tile; the edge ones are halo longer
    bounds = [0] + [halo + round(i * middle) for i in range(1, n)] + [size]
    crop = _crop(size, n, tile, halo)
    plan = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        c0 = min(max(start - halo, 0), size - crop)
        plan.append(((c0, c0 + crop), (start, stop)))
    return plan


def _crop(size: int, n: int, tile: int, halo: int) -> int:
    """Crop edge (px) of ``n`` tiles along ``size`` px: a middle interior and two halos, at
    a fast FFT size, at most ``tile``."""
    return min(tile, size, fft_size(math.ceil((size - 2 * halo) / n) + 2 * halo))


def plan_tiles(shape: tuple[int, int], tile: int, halo: int) -> list[Tile]:
    """Tiles (row-major) covering a frame of ``shape`` (ny, nx) px; see :func:`axis_plan`."""
    ys, xs = axis_plan(shape[0], tile, halo), axis_plan(shape[1], tile, halo)
    return [Tile(cy, cx, iy, ix) for cy, iy in ys for cx, ix in xs]


def frame_plan(shape: tuple[int, int], config) -> list[Tile]:
    """The tiles ``refine.tile`` and the optics give a frame of ``shape`` (ny, nx) px."""
    return plan_tiles(shape, config.refine.tile, halo_px(config))


def fft_size(n: int) -> int:
    """The smallest size >= ``n`` whose only prime factors are :data:`FFT_PRIMES`."""
    size = max(int(n), 1)
    while True:
        rest = size
        for p in FFT_PRIMES:
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 1
