"""popout(): one frame -> depth, thickness and confidence maps -> initial volume, on dask.

The work is a small dask graph: one task per block of patch rows computes the patches' radial
power spectra (the expensive part, parallel), one task fits all spectra at once (a few matrix
products), one task turns the fits and the frame into maps and the volume. Block boundaries
come from the config, never from the number of workers, so the result is the same on the
threaded scheduler, on a distributed Client, or synchronously.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import dask
import numpy as np
from scipy import ndimage

from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.physics import interaction_constant, wavelength
from stream3d.popout import maps, membrane, texture_spectrum
from stream3d.popout.ctf_fit import FitDesign, PatchFits, fit_design, fit_profiles
from stream3d.popout.heights import compact_heights, object_heights, reach_mask
from stream3d.popout.layers import stacked_columns
from stream3d.popout.mask_growth import fill_gaps, follow_taper, keep_apart, split_necks
from stream3d.popout.ctf_model import (
    Optics, delocalisation, lens_envelope, ring_count, ring_phase, search_defoci, thon_model,
)
from stream3d.popout.normalise import Normalised, check_frame, normalise
from stream3d.popout.patches import PatchGrid, hann_window, patch_grid, windowed_patches
from stream3d.popout.segment import material_mask
from stream3d.popout.spectrum import radial_bins, radial_profiles
from stream3d.popout.texture_mask import texture_mask
from stream3d.popout.thickness import layered_thickness, solvent_background
from stream3d.popout.volume import layered_volume
from stream3d.specimen.geometry import least_column

#: Weight of an unconfident patch (its filled-in height) next to a confident one (<= 1).
_FLOOR_WEIGHT = 1e-3

#: Below this share of solvent the solvent level is taken from the dose, not from the frame.
_MIN_SOLVENT = 0.05

#: Solvent pixels this close to material (px) are left out of the solvent level: edges.
_FRINGE_PX = 4

#: Å, width of the solvent offset's smoothing (the phase contrast's blind large scales).
_BACKGROUND = 24.0

#: Å, step of the effective defoci at which the contrast is inverted for thickness.
_THICKNESS_STEP = 40.0

#: Share of the neighbourhood's thickness at which an object's edge is put.
_EDGE_LEVEL = 0.35

#: Texture-marked material must also be this share of the noise threshold thick.
_CORE_LEVEL = 0.3

#: Material must be thicker than this many standard deviations of the solvent's thickness.
_NOISE_SIGMAS = 3.0

#: Rings closer than this many Fourier pixels (1 / patch width) are blurred by the window.
_RESOLVED_FOURIER_PX = 2.0

#: Rounds of (solvent offset -> thickness -> mask -> solvent offset).
_SOLVENT_ROUNDS = 3

#: Most thickness maps made while solving for the absorption the lost electrons imply
#: (secant steps; abTEM carbon atoms and a simulated 0.05 settle in 4-6).
_ABSORPTION_ROUNDS = 8

#: A relative change of the absorption below this ends the rounds.
_ABSORPTION_SETTLED = 0.03

#: Standard errors (shot noise) by which the lost electrons must differ from sample.absorption.
_ABSORPTION_SIGMAS = 3.0

#: ... and by this share of it: the measure's systematic error (fringes beyond the region, the
#: solvent's level) is larger than its shot noise. Our simulator at absorption 0.1 measures
#: 0.095-0.106 frame to frame, and replacing 0.1 by such values cost a warm movie 0.04 IoU.
_ABSORPTION_MARGIN = 0.25

#: With a support membrane, the thickness map's resolution is this many times popout.resolution:
#: the membrane's projected texture is thickness noise at the finest scales (a 100 Å carbon
#: membrane under 45-77 Å discs: solvent noise 13 Å -> 10 Å at 2x, disc 10th percentile
#: 40 -> 36 Å, against the true heights and solvent).
_MEMBRANE_RESOLUTION = 2.0

#: With a support membrane, texture_mask's whitened variance must exceed the bare field's by
#: this share (its default, 3, is for the plain band, where material's texture is strong;
#: measured on benchmarks/membrane.py: 1.0 lost discs near the membrane, 0.3 found all three
#: of every 5 V seed).
_MEMBRANE_EXCESS = 0.3

#: Rounds of (ring fits -> texture spectrum implied by them) after the first estimate.
_TEXTURE_ROUNDS = 2

#: The band popout.k_low..k_high must hold this many radial bins of a patch, or the ring fit
#: has too little to go on (a round figure for an error; no measurement chose it).
_MIN_BINS = 6

#: Percentile of the patches' signal amplitudes taken as the material's typical one for the fit
#: weights: high, because material may cover only a small part of the frame. Set by hand on the
#: accuracy suite's seed 0.
_SIGNAL_PERCENTILE = 90

#: popout.resolution widths: sigma of the texture mask's local variance window. Set by hand on
#: the accuracy suite's seed 0.
_TEXTURE_WINDOW = 2.0

#: popout.resolution widths: reach of the neighbourhood whose thickest pixel an edge is judged
#: against (:data:`_EDGE_LEVEL`). Set by hand on the accuracy suite's seed 0.
_EDGE_REACH = 3.0

#: Share of the noise threshold the edges and the texture-marked core must exceed when specks
#: and pin-holes are cleaned from them (nearly all their pixels exceed the threshold itself: the
#: core was raised to it). Set by hand on the accuracy suite's seed 0.
_MATERIAL_LEVEL = 0.5

#: Each secant step of the absorption stays within this factor of the last guess (a safeguard:
#: a full step can overshoot when the absorption-free thickness is far off; not measured).
_SECANT_FACTOR = 3


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays is ambiguous; compare fields
class PopoutResult:
    """Pop-out of one frame. Maps are (ny, nx) float32 on the frame's pixels.

    volume: (slices, ny, nx) float32, real potential (V) of the initial volume on the config
    grid. height: Å above the exit plane, centre of mass of the material in each column;
    defined everywhere (solvent columns carry the nearest material's height, so the map can be
    smoothed and plotted): use ``thickness > 0`` as the material mask. thickness: Å of
    material, 0 = solvent. confidence: in [0, 1], how far to trust ``height``; 0 in solvent
    and where depth could not be measured. message: "" or human-readable warnings.
    texture: the amorphous texture's power spectrum S(k) measured from the frame (see
    :func:`stream3d.popout.texture_spectrum.evaluate`; () = not measured), for refinement's
    spectral height fit. absorption: the absorption ratio (imaginary / real potential) the
    thickness was measured with: ``sample.absorption``, or more where the frame shows that
    material loses more electrons (:func:`_lost_electrons`; None = the config's).
    """

    volume: np.ndarray
    height: np.ndarray
    thickness: np.ndarray
    confidence: np.ndarray
    message: str
    texture: tuple[float, ...] = ()
    absorption: float | None = None


@dataclass(frozen=True)
class _Setup:
    """What every task of one frame shares (small, picklable)."""

    grid: PatchGrid
    optics: Optics
    k_low: float
    k_high: float
    defoci: tuple[float, ...]
    # sample.membranes: their sub-layers' (effective defoci Å, weights), see popout.membrane
    membranes: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    background: membrane.Background | None = None  # measured from the frame (_fit_all)


def popout(frame: np.ndarray, config: Config, *, client: "distributed.Client | None" = None  # noqa: F821
           ) -> PopoutResult:
    """Pop-out 3D metrology of one frame of raw detector counts (y, x).

    Per-patch Thon-ring fits give each patch's effective defocus, hence the height of its
    material (effective defocus = microscope.defocus - height); the phase (and absorption)
    contrast, inverted at those heights, gives thickness and the material mask; each object is
    then refitted on its own pixels (and unmixed into two layers where it holds two); all of it
    becomes a volume of ``sample.potential`` V.
    Runs on dask: the threaded scheduler by default (``popout.threads``; synchronously when
    already inside a dask worker task, unless popout.threads is set), or ``client``.
    Raises :class:`UserError` for a frame whose shape cannot work with the config; bad values
    (NaN, all zero, no contrast) give a zero-confidence result with a message instead.
    """
    array = check_frame(frame, config)
    setup = _setup(array.shape, config)
    norm = normalise(array, config)
    if not norm.usable:
        return _blank(array.shape, config, "; ".join(norm.messages))
    # float32 for the patches: half the memory traffic, ample for a power spectrum.
    intensity = dask.delayed(norm.intensity.astype(np.float32), pure=False)
    blocks = [dask.delayed(_block_profiles, pure=False)(intensity, setup, rows)
              for rows in setup.grid.row_blocks(config.popout.rows_per_task)]
    fits = dask.delayed(_fit_all, pure=False)(blocks, setup, norm.counts_per_unit,
                                             float(norm.intensity.mean()))
    result = dask.delayed(_assemble, pure=False)(fits, norm, setup, config)
    if client is not None:
        return client.compute(result).result()
    threads = config.popout.threads
    if threads == 0 and _in_dask_worker():
        # Frames already run in parallel, one per worker thread: more threads would only
        # oversubscribe the cores. The same tasks run, in order, on this thread.
        return result.compute(scheduler="synchronous")
    return result.compute(scheduler="threads", num_workers=threads or None)


def _in_dask_worker() -> bool:
    """True when called from a task on a dask.distributed worker."""
    try:
        from distributed import get_worker
    except ImportError:
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


def _setup(shape: tuple[int, int], config: Config) -> _Setup:
    p = config.popout
    optics = Optics.from_config(config)
    k_high = min(p.k_high, optics.k_max())
    if k_high <= p.k_low:
        raise UserError(f"popout.k_low = {p.k_low:g} Å^-1 is above the highest frequency with "
                        f"signal ({optics.k_max():.3g} Å^-1: 2/3 Nyquist or the aperture)")
    bins = radial_bins(p.patch, optics.pixel_size, p.k_low, k_high, optics.ellipse)
    if bins.size < _MIN_BINS:
        raise UserError(f"the band popout.k_low..k_high holds only {bins.size} radial bins of a "
                        f"{p.patch} px patch; widen the band or raise popout.patch")
    layers = membrane.layer_defoci(config) if config.sample.membranes else ((), ())
    return _Setup(patch_grid(shape, p.patch, p.step), optics, p.k_low, k_high,
                  tuple(float(d) for d in search_defoci(config)), layers)


def _block_profiles(intensity: np.ndarray, setup: _Setup, rows: tuple[int, int]) -> np.ndarray:
    """Radial power spectra of the patches in patch rows [start, stop)."""
    bins = radial_bins(setup.grid.patch, setup.optics.pixel_size, setup.k_low, setup.k_high,
                       setup.optics.ellipse)
    return radial_profiles(windowed_patches(intensity, setup.grid, rows), bins)


def _fit_all(blocks: list[np.ndarray], setup: _Setup, counts_per_unit: float,
             mean_intensity: float) -> tuple[PatchFits, FitDesign, Optics,
                                             membrane.Background | None]:
    """Fit every patch's spectrum, alternating with the texture spectrum it implies (see
    :mod:`stream3d.popout.texture_spectrum`); weights from the frame's Poisson noise and
    typical material spectrum; the support membranes' rings (measured first, see
    :mod:`stream3d.popout.membrane`) taken out of every spectrum. Returns the fits, their
    design, the optics with the measured texture and the membranes' background (or None)."""
    profiles = np.concatenate(blocks, axis=0)
    p = setup.grid.patch
    bins = radial_bins(p, setup.optics.pixel_size, setup.k_low, setup.k_high, setup.optics.ellipse)
    # White Poisson noise: variance I / counts per pixel, times the window's energy.
    noise = mean_intensity / counts_per_unit * float((hann_window(p) ** 2).sum())
    excess = profiles - noise
    band = (bins.k, setup.k_low, setup.k_high)
    background = spread = None
    if setup.membranes[0]:
        background = membrane.measure(excess, bins.counts, noise, bins.k, setup.membranes, p,
                                      setup.optics, setup.k_low, setup.k_high)
        excess = excess - background.spectrum
        spread = 1.0 + background.spectrum / noise  # its speckle is noise to the texture
    lens = lens_envelope(bins.k, setup.optics)
    optics = replace(setup.optics, texture=texture_spectrum.first_estimate(
        excess, lens, *band, spread=spread))
    flat = thon_model(setup.defoci, p, replace(setup.optics, texture=texture_spectrum.FLAT),
                      setup.k_low, setup.k_high)
    for round_ in range(_TEXTURE_ROUNDS + 1):
        model = thon_model(setup.defoci, p, optics, setup.k_low, setup.k_high)
        design = fit_design(model, bins.counts, noise, _signal_level(excess, model.level),
                            None if background is None else background.spectrum)
        fits = fit_profiles(profiles, design)
        if round_ == _TEXTURE_ROUNDS:
            return fits, design, optics, background
        nearest = np.clip(np.searchsorted(flat.defoci, fits.defocus), 0, len(flat.defoci) - 1)
        trust = np.where(np.isfinite(fits.sigma), fits.score, 0.0)
        optics = replace(optics, texture=texture_spectrum.refined_estimate(
            excess, flat.rings[nearest], fits.amplitude, trust, *band, spread=spread))


def _signal_level(excess: np.ndarray, level: np.ndarray) -> float:
    """Typical ring-averaged signal amplitude S of the patches that hold material.

    Each patch's least-squares S in excess ~ S level / 2; the 90th percentile
    (:data:`_SIGNAL_PERCENTILE`), because material may cover only a small part of the frame
    and the weights are for material.
    """
    denom = float((level * level).sum())
    if denom <= 0:
        return 0.0
    amplitudes = 2.0 * (excess @ level) / denom
    return max(float(np.percentile(amplitudes, _SIGNAL_PERCENTILE)), 0.0)


def _assemble(fitted: tuple[PatchFits, FitDesign, Optics, membrane.Background | None],
              norm: Normalised, setup: _Setup, config: Config) -> PopoutResult:
    fits, design, optics, background = fitted
    # with the texture spectrum (and the membranes' background) measured from the frame
    setup = replace(setup, optics=optics, background=background)
    p, s = config.popout, config.sample
    grid, optics = setup.grid, setup.optics
    rows, cols = grid.grid_shape
    messages = list(norm.messages)
    depth = s.slices * s.slice_thickness
    rings = ring_count(fits.defocus, optics, setup.k_low, setup.k_high)
    confidence_p = maps.patch_confidence(fits, rings, tolerance=p.tolerance, min_rings=p.min_rings)
    # Fitted effective defocus -> height. The multislice model images slice i's material at
    # its top face, dz/2 above the slice centre used for the centre of mass: remove that.
    height_p = config.microscope.defocus - fits.defocus - s.slice_thickness / 2
    good = confidence_p >= p.min_confidence

    # Unconfident patches take the height of the nearest confident one, then every pixel
    # takes the window- and confidence-weighted mean of the patches that cover it.
    good_grid = good.reshape(rows, cols)
    if good_grid.any():
        height_grid = maps.fill_nearest(height_p.reshape(rows, cols), good_grid)
    else:
        height_grid = np.full((rows, cols), depth / 2)
    weights = np.where(good, confidence_p, 0.0).reshape(rows, cols) + _FLOOR_WEIGHT
    height_px, _ = maps.spread(np.clip(height_grid, 0.0, depth), weights, grid)

    mask, thickness, objects = _material(norm, height_px, setup, config)
    setup, (mask, thickness, objects) = _measured_absorption(
        norm, height_px, setup, config, (mask, thickness, objects))
    optics = setup.optics
    conf_px, _ = maps.spread(confidence_p.reshape(rows, cols), np.ones((rows, cols)), grid)
    layers = None
    # Second pass: every object's own heights, then its thickness at those heights. Over a
    # support membrane the patch-wise map's instead, one per compact object: the membrane's
    # speckle is noise to each object's small mask-windowed spectra, and their fits drift
    # toward fewer rings (higher): measured +16..+80 Å on benchmarks/membrane.py even with each
    # window's own membrane spectrum taken out, and +40 Å with the bare membrane frame's exact
    # spectra taken out. One median height per disc there: column height error 31 / 25 / 37
    # -> 9 / 24 / 16 Å, IoU 0.30 / 0.37 / 0.21 -> 0.57 / 0.40 / 0.43 (seeds 1-3).
    if mask.any():
        labels, _ = ndimage.label(objects)
        if setup.background is None:
            objects = object_heights(norm.intensity - 1.0, labels, height_px, design, setup,
                                     config)
            height_px, conf_px = objects.height, objects.confidence
        else:
            objects = None
            height_px = compact_heights(height_px, labels, grid.patch)
        mask, thickness, _ = _material(norm, height_px, setup, config)
        height_px = reach_mask(height_px, labels, mask)
        if objects is not None and objects.layers is not None:
            layers = stacked_columns(objects.layers, labels, thickness, height_px)
            if layers is not None:
                share = layers.top_share
                height_px = np.where(layers.where, share * layers.top + (1 - share) *
                                     layers.bottom, height_px)
    conf_px = np.where(mask & norm.valid, np.nan_to_num(conf_px), 0.0)
    note = _solvent_note(norm, mask)
    if note:
        messages.append(note)

    messages.extend(_depth_warnings(config, setup, confidence_p, good, mask, conf_px))
    volume = layered_volume(height_px, thickness, layers, slices=s.slices,
                            slice_thickness=s.slice_thickness, potential=s.potential)
    return PopoutResult(volume, height_px.astype(np.float32), thickness.astype(np.float32),
                        np.clip(conf_px, 0.0, 1.0).astype(np.float32), "; ".join(messages),
                        tuple(optics.texture), optics.absorption)


def _material(norm: Normalised, height: np.ndarray, setup: _Setup,
              config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(material mask, thickness map Å, objects) from the frame's phase and absorption contrast.

    ``objects`` is the mask before its edges are put at half thickness: everything above the
    noise, a few pixels wider, which gives each object's Thon-ring fit more pixels.

    The contrast is inverted at each pixel's effective defocus (its material's height), which
    puts edges where the material ends rather than on the delocalised fringes; the offset the
    phase contrast cannot see (k -> 0) is measured on the solvent and removed, in a few rounds
    since a wrong offset makes a wrong mask.
    """
    p, s = config.popout, config.sample
    optics = setup.optics
    depth = s.slices * s.slice_thickness
    min_area_px = p.min_area / optics.pixel_size**2
    # The model images a slice's material at its top face: the fitted effective defocus.
    effective = config.microscope.defocus - height - s.slice_thickness / 2
    # First solvent: where the band-passed texture is at the noise level (generous: it follows
    # the delocalised fringes, so what it calls solvent is solvent). Its intensity is the
    # reference of the contrast: a dose that is off by some % is absorbed.
    mask = texture_mask(norm.intensity, k_low=setup.k_low, k_high=setup.k_high,
                        pixel_size=optics.pixel_size, counts_per_unit=norm.counts_per_unit,
                        **_texture_options(setup, p.resolution / optics.pixel_size))
    level = _solvent_level(norm, mask)
    raw = layered_thickness(norm.intensity / level - 1.0, effective, step=_THICKNESS_STEP,
                            optics=optics, potential=s.potential,
                            resolution=p.resolution * (1 if setup.background is None else
                                                       _MEMBRANE_RESOLUTION),
                            counts_per_unit=norm.counts_per_unit * level)
    texture = mask
    mask, t, threshold = _segment(raw, texture, norm, p.min_thickness, min_area_px,
                                  _BACKGROUND / optics.pixel_size)
    mask = split_necks(mask, t, threshold, height, p.tolerance)
    # A step of thickness T blurred by the map's resolution crosses T/2 at the edge: keep the
    # pixels above a share of their neighbourhood's thickness, not everything above the noise
    # (a little below half, for round objects whose edges thin out).
    reach = 2 * int(math.ceil(_EDGE_REACH * p.resolution / optics.pixel_size)) + 1
    local = ndimage.maximum_filter(np.where(mask, t, 0.0), size=reach)
    edged = mask & (t >= _EDGE_LEVEL * local)
    # Phase contrast barely transfers the largest scales, so the middle of a wide object (or
    # any object at low dose) can fall below the noise of the thickness map while its texture
    # is plain to see. The texture mask, shrunk by the lens delocalisation (its fringes reach
    # that far out; in overfocus farther, Cs adding), is material too where the map is not ~0,
    # at least threshold thick.
    # The shift is linear in the defocus at each k: the extremes of the map bound it.
    extremes = np.array([np.min(effective), np.max(effective)])
    spread = delocalisation(extremes, optics, setup.k_low, setup.k_high)
    core = ndimage.binary_erosion(texture, iterations=max(int(round(spread / optics.pixel_size)), 1))
    core &= t > _CORE_LEVEL * threshold  # not the halo a strong edge leaves beyond erosion
    t = np.where(core & ~edged, np.maximum(t, threshold), t)
    edged = material_mask(np.where(edged | core, t, 0.0), threshold=_MATERIAL_LEVEL * threshold,
                          min_area_px=min_area_px) & norm.valid
    solvent = ndimage.binary_erosion(~mask, iterations=_FRINGE_PX) & norm.valid
    if solvent.mean() >= _MIN_SOLVENT:
        edged = follow_taper(edged, t, solvent, norm.valid)
    edged, t, _ = fill_gaps(edged, t, threshold, norm.valid)
    # Thin edges (round branches) fall under the threshold within about the map's resolution
    # of the true edge: grow the mask by that much. A missed column loses the material's
    # whole height; an extra rim costs a little IoU.
    grow = int(round(p.resolution / optics.pixel_size))
    if grow > 0:
        edged = ndimage.binary_dilation(edged, iterations=grow) & norm.valid
    edged = keep_apart(edged, mask, height, p.tolerance)
    # Material prior (as refinement's): a material column holds at least half a slice.
    thickness = np.clip(t, least_column(s.slice_thickness), depth)
    return edged, np.where(edged, thickness, 0.0), mask & norm.valid


def _measured_absorption(norm: Normalised, height: np.ndarray, setup: _Setup, config: Config,
                         material: tuple[np.ndarray, np.ndarray, np.ndarray]
                         ) -> tuple[_Setup, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The set-up with the absorption a at which the thickness measured with a implies, by
    the electrons the material loses, that same a (:func:`_lost_electrons`), and ``material``
    (mask, thickness, objects of :func:`_material`) measured with it. ``sample.absorption``
    stays where the loss is within the shot noise and :data:`_ABSORPTION_MARGIN` of it: even a
    tiny absorption gives the thickness inversion a transfer at k -> 0 and moves the map's
    large scales.

    The data win both ways: more loss than the config's absorption implies is texture
    scattered away (real atoms); less means the config overstates it. Taken at its word, a
    config's 0.1 on abTEM carbon atoms (which lose 0.014-0.024) put the k -> 0 transfer on
    absorption the frame does not show and made the discs 0.3x their thickness.

    The fixed point a = lost(a) is found by secant steps on a - lost(a): plain iteration
    converges slowly when the absorption-free thickness is many times too large.
    """
    base = config.sample.absorption
    lost, error = _lost_electrons(norm, material[0], material[1], height, setup, config)
    if abs(lost - base) <= base * _ABSORPTION_MARGIN + _ABSORPTION_SIGMAS * error:
        return setup, material
    # The answer stays on the side of the config's value that the first measure shows: in
    # overfocus the measure grows with the absorption the map is made with, and an unbounded
    # secant found a second, wrong root (0.05 on a frame of 0.1 that measured 0.15 first).
    low, high = (base, math.inf) if lost > base else (0.0, base)
    a_old, f_old, a = base, base - lost, lost
    for _ in range(_ABSORPTION_ROUNDS):
        trial = replace(setup, optics=replace(setup.optics, absorption=a))
        found = _material(norm, height, trial, config)
        setup, material = trial, found
        lost, _ = _lost_electrons(norm, found[0], found[1], height, trial, config)
        f = a - lost
        if abs(f) <= _ABSORPTION_SETTLED * a or f == f_old:
            break
        step = f * (a - a_old) / (f - f_old)
        a_old, f_old = a, f
        # Stay positive and within _SECANT_FACTOR of the last guess (a safeguarded secant).
        a = float(np.clip(a - step, max(low, a / _SECANT_FACTOR),
                          min(high, _SECANT_FACTOR * a)))
    return setup, material


def _lost_electrons(norm: Normalised, mask: np.ndarray, thickness: np.ndarray,
                    height: np.ndarray, setup: _Setup, config: Config) -> tuple[float, float]:
    """The absorption ratio a (imaginary / real potential) that the electrons the material
    loses imply: sum over the material and its fringes of (1 - I / solvent) / (2 sigma V0 x
    sum of the thickness, Å px).

    Phase contrast moves intensity but conserves it, so what the material and its fringes lack
    in total is what left the image: absorbed, or scattered by the material's texture beyond
    the aperture and the band (real atoms: much of their power lies there; the config's
    homogeneous material cannot know it). Returns (a, its standard error from the shot
    noise); (0, inf) without material or solvent to compare with.
    """
    if not mask.any() or not thickness[mask].sum() > 0:
        return 0.0, math.inf
    optics = setup.optics
    # The fringes reach as far as the lens moves the band (lowest material in underfocus,
    # highest in overfocus).
    effective = config.microscope.defocus - np.array([np.min(height[mask]), np.max(height[mask])])
    reach = delocalisation(effective, optics, setup.k_low, setup.k_high) / optics.pixel_size
    region = ndimage.binary_dilation(mask, iterations=max(int(math.ceil(reach)), 1)) & norm.valid
    solvent = ~ndimage.binary_dilation(region, iterations=_FRINGE_PX) & norm.valid
    if solvent.mean() < _MIN_SOLVENT:
        return 0.0, math.inf
    level = float(np.median(norm.intensity[solvent]))
    deficit = float(np.sum(1.0 - norm.intensity[region] / level))
    # Poisson: each pixel's intensity has variance I / counts_per_unit.
    noise = math.sqrt(float(np.sum(norm.intensity[region])) / norm.counts_per_unit) / level
    per_a = 2.0 * interaction_constant(optics.energy) * config.sample.potential * float(
        thickness[mask].sum())
    return max(deficit / per_a, 0.0), noise / per_a


def _segment(raw: np.ndarray, mask: np.ndarray, norm: Normalised, min_thickness: float,
             min_area_px: float, sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(mask, thickness Å, threshold Å) of a raw thickness map, starting from a first mask:
    rounds of (solvent offset -> thickness -> mask above the solvent's noise)."""
    t, threshold = raw, min_thickness
    for _ in range(_SOLVENT_ROUNDS):
        solvent = ndimage.binary_erosion(~mask, iterations=_FRINGE_PX) & norm.valid
        if solvent.mean() < _MIN_SOLVENT:
            break
        t = raw - solvent_background(raw, solvent, sigma)
        threshold = max(min_thickness, _NOISE_SIGMAS * float(t[solvent].std()))
        mask = material_mask(t, threshold=threshold, min_area_px=min_area_px)
    return mask, t, threshold


def _texture_options(setup: _Setup, resolution_px: float) -> dict:
    """texture_mask's window and threshold: its defaults, or with a support membrane the band
    whitened by the membrane's spectrum, a window :data:`_MEMBRANE_RESOLUTION` x wider and a
    lower threshold (:data:`_MEMBRANE_EXCESS`): whitened, the membrane and the noise are one
    white level, and the objects' excess over it is small (their rings fall where the
    membrane's do not), so it is read over more pixels."""
    if setup.background is None:
        return {"sigma_px": _TEXTURE_WINDOW * resolution_px}
    return {"sigma_px": _TEXTURE_WINDOW * _MEMBRANE_RESOLUTION * resolution_px,
            "excess": _MEMBRANE_EXCESS, "background": setup.background.relative}


def _solvent_level(norm: Normalised, mask: np.ndarray) -> float:
    """Median intensity of the solvent away from material edges; 1 (the dose) when there is
    too little solvent to measure."""
    solvent = ndimage.binary_erosion(~mask, iterations=_FRINGE_PX) & norm.valid
    if solvent.mean() < _MIN_SOLVENT:
        return 1.0
    level = float(np.median(norm.intensity[solvent]))
    return level if level > 0 else 1.0


#: The solvent's intensity may differ from detector.dose's by this share before the result
#: says so (a round figure for a message; no measurement chose it).
_SOLVENT_NOTE = 0.05


def _solvent_note(norm: Normalised, mask: np.ndarray) -> str:
    """A warning when the solvent's intensity is not what detector.dose predicts."""
    level = _solvent_level(norm, mask)
    if abs(level - 1.0) <= _SOLVENT_NOTE:
        return ""
    return (f"solvent intensity is {level:.2f} x detector.dose; thickness measured against the "
            "solvent")


#: Heights across the cell at which the warnings count Thon rings (its top, bottom and
#: between: the ring count varies smoothly with height; a sampling choice).
_CELL_HEIGHTS = 9

#: Samples of the band over which the finest ring spacing is read (the phase's slope at
#: k_high, by finite differences; a sampling choice).
_PERIOD_SAMPLES = 64

#: Underfoci (Å) searched for the one the too-close-to-focus warning suggests: from focus to
#: the largest in steps (round figures for a message), and rings beyond popout.min_rings the
#: suggestion leaves as a margin.
_SUGGEST_DEFOCUS = (0.0, 20000.0, 50.0)
_SUGGEST_RING_MARGIN = 0.5


def _depth_warnings(config: Config, setup: _Setup, confidence_p: np.ndarray, good: np.ndarray,
                    mask: np.ndarray, conf_px: np.ndarray) -> list[str]:
    p, m = config.popout, config.microscope
    depth = config.sample.slices * config.sample.slice_thickness
    out = []
    cell = m.defocus - np.linspace(0.0, depth, _CELL_HEIGHTS)
    rings = ring_count(cell, setup.optics, setup.k_low, setup.k_high)
    if rings.max() < p.min_rings:
        scherzer = 1.2 * math.sqrt(m.cs * wavelength(m.energy))
        out.append(f"microscope.defocus = {m.defocus:g} Å is too close to focus (Scherzer "
                   f"focus: {scherzer:.0f} Å): at most {rings.max():.1f} Thon rings fall in "
                   f"popout.k_low..k_high ({setup.k_low:g}..{setup.k_high:.3g} Å^-1), fewer than "
                   f"popout.min_rings = {p.min_rings:g}; depth cannot be measured (use a larger "
                   f"underfocus, e.g. >= {_enough_defocus(config, setup):.0f} Å)")
    elif rings.min() < p.min_rings:
        out.append(f"too few Thon rings (< popout.min_rings = {p.min_rings:g}) for material "
                   f"near the cell top at microscope.defocus = {m.defocus:g} Å: depth there is "
                   "low-confidence")
    finest = _finest_ring_period(config, setup)
    resolved = _RESOLVED_FOURIER_PX / (p.patch * config.sample.pixel_size)
    if finest < resolved:
        need = int(2 ** math.ceil(math.log2(_RESOLVED_FOURIER_PX / (finest * config.sample.pixel_size))))
        out.append(f"Thon rings near popout.k_high = {setup.k_high:.3g} Å^-1 are finer than a "
                   f"popout.patch = {p.patch} px patch resolves: raise popout.patch to {need} px "
                   "or lower popout.k_high")
    if not mask.any():
        out.append("no material found: the frame looks like solvent only")
    elif not good.any() and not out:
        out.append("no patch has a confident Thon-ring fit: depth unknown")
    elif not out:
        share = float((conf_px[mask] < p.min_confidence).mean())
        if share > 0.5:
            out.append(f"depth is low-confidence in {100 * share:.0f}% of the material "
                       "(weak or ambiguous Thon rings)")
    return out


def _finest_ring_period(config: Config, setup: _Setup) -> float:
    """Spacing (Å^-1) of the finest Thon rings in the band for any defocus searched (the
    largest |defocus| in underfocus, but in overfocus the most negative one: Cs adds to it)."""
    k = np.linspace(setup.k_low, setup.k_high, _PERIOD_SAMPLES)
    phase = ring_phase(k, np.asarray(setup.defoci)[:, None], setup.optics)
    slope = np.abs(np.gradient(phase, k, axis=-1)).max()  # rad per Å^-1
    return math.pi / slope if slope > 0 else math.inf


def _enough_defocus(config: Config, setup: _Setup) -> float:
    """The smallest underfocus (Å) giving min_rings rings for material at the cell top."""
    depth = config.sample.slices * config.sample.slice_thickness
    trial = np.arange(*_SUGGEST_DEFOCUS)
    rings = ring_count(trial - depth, setup.optics, setup.k_low, setup.k_high)
    ok = np.nonzero(rings >= config.popout.min_rings + _SUGGEST_RING_MARGIN)[0]
    return float(trial[ok[0]]) if len(ok) else float("nan")


def _blank(shape: tuple[int, int], config: Config, message: str) -> PopoutResult:
    """A zero-confidence, all-solvent result for a frame with nothing to measure."""
    s = config.sample
    zeros = np.zeros(shape, dtype=np.float32)
    return PopoutResult(np.zeros((s.slices, *shape), dtype=np.float32),
                        np.full(shape, s.slices * s.slice_thickness / 2, dtype=np.float32),
                        zeros, zeros.copy(), message)
