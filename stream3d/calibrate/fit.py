"""Fit of effective defocus, two-fold astigmatism (and Cs) to the Thon rings of a power spectrum.

Model of the spectrum in the band [k_low, k_high], after dividing by a smooth radial reference
(a polynomial fit to the log of the rotational average, so the model's smooth parts stay
low-order over a steeply falling spectrum):

    y(k) = b(|k|) + a(|k|) sin^2(chi(k) - alpha)

chi from :func:`stream3d.physics.astigmatic_chi` (defocus D, C12 at phi12, Cs); alpha =
atan(absorption), the amplitude-contrast phase; b and a low-order polynomials of |k|, solved
linearly for every chi (variable projection), so only (D, p, q[, Cs]) are searched, with
p = C12 cos 2 phi12 and q = C12 sin 2 phi12 (no angle wrap, no C12 >= 0 bound):

1. coarse: grid over D on the rotational average (isotropic model), then a finer 1D search;
2. astigmatism: the same 1D fit in angular sectors near D gives D(phi) = D - p cos 2phi -
   q sin 2phi, a linear least-squares fit for (D, p, q);
3. refinement: the 2D model fitted to every pixel of the band (scipy least_squares), with
   uncertainties from the Gauss-Newton covariance, inflated for the window's correlation of
   neighbouring frequencies;
4. resolution: the highest frequency up to which the ring-averaged (elliptical) data and model
   correlate above ``fit_threshold`` over a window one ring wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import legendre
from scipy.optimize import least_squares, minimize_scalar

from stream3d.calibrate.ellipse import effective_k2, elliptical_average
from stream3d.calibrate.spectrum import HANN_CORRELATION, Spectrum
from stream3d.optics import astigmatic_chi, band_limit_cutoff, wavelength

_CS_UNIT = 1e7  # Å per mm: Cs is refined in mm so all parameters have similar scales


@dataclass(frozen=True)
class FitOptions:
    """What the fit assumes and where it looks (Å, eV, Å^-1)."""

    energy: float  # eV
    cs: float  # Å, spherical aberration (the start value when fit_cs)
    absorption: float = 0.1  # imaginary / real potential: amplitude contrast alpha = atan(this)
    k_low: float = 1 / 30  # Å^-1, low end of the fitted band (30 Å)
    k_high: float | None = None  # Å^-1, high end; None: 2/3 Nyquist, or the aperture if lower
    aperture: float = 0.0  # mrad, objective aperture (0 = none): caps k_high
    defocus_min: float = 100.0  # Å, coarse search range of the effective defocus
    defocus_max: float = 20000.0  # Å
    max_astigmatism: float = 1000.0  # Å, largest C12 accepted from the sector fit
    fit_cs: bool = False  # also fit Cs
    sectors: int = 12  # angular sectors (over 180 degrees) of the astigmatism search
    degree: int = 3  # degree of the polynomials b(|k|) and a(|k|)
    reference_degree: int = 2  # degree of the polynomial fit to the log rotational average
    fit_threshold: float = 0.5  # ring-window correlation that still counts as a fit
    min_significance: float = 60.0  # ring significance (noise units) below which no rings
    track_range: float = 300.0  # Å, defocus searched either side of a given start (movies)

    def band(self, pixel_size: float) -> tuple[float, float]:
        """(k_low, k_high) Å^-1 for frames at ``pixel_size`` Å."""
        high = band_limit_cutoff((pixel_size, pixel_size))
        if self.aperture > 0:
            high = min(high, self.aperture * 1e-3 / wavelength(self.energy))
        if self.k_high is not None:
            high = min(high, self.k_high) if self.k_high > 0 else high
        if not 0 < self.k_low < high:
            raise ValueError(f"fit band is empty: low {1 / self.k_low if self.k_low else 0:.3g} Å "
                             f"to high {1 / high:.3g} Å resolution (pixel size {pixel_size:g} Å)")
        return self.k_low, high


@dataclass(frozen=True)
class LensFit:
    """The fitted lens. Lengths in Å, angles in degrees, frequencies in Å^-1."""

    defocus: float  # effective defocus of the dominant scatterer, > 0 underfocus
    astigmatism: float  # C12 >= 0
    astigmatism_angle: float  # phi12 in [0, 180), from +x toward +y: least underfocused
    cs: float
    defocus_error: float  # 1 sigma, statistical
    astigmatism_error: float
    astigmatism_angle_error: float
    cs_error: float | None  # None when Cs was held fixed
    resolution: float  # Å: the fit holds (ring correlation > threshold) down to this period
    correlation: float  # correlation of the 2D model with the spectrum over the band
    k_low: float
    k_high: float
    coarse_defocus: float  # from the rotational average, before astigmatism
    pixels: int  # frequency pixels fitted
    tiles: int  # spectrum tiles averaged
    significance: float  # ring significance: variance the rings explain, in noise units
    warnings: tuple[str, ...] = ()
    ring_k: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    ring_correlation: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False,
                                         compare=False)

    def as_dict(self) -> dict:
        """JSON-ready numbers (docs/architecture.md's calibrate keys and more)."""
        return {
            "defocus": self.defocus, "astigmatism": self.astigmatism,
            "astigmatism_angle": self.astigmatism_angle, "cs": self.cs,
            "defocus_error": self.defocus_error, "astigmatism_error": self.astigmatism_error,
            "astigmatism_angle_error": self.astigmatism_angle_error, "cs_error": self.cs_error,
            "resolution": self.resolution, "correlation": self.correlation,
            "fit_band": [1 / self.k_low, 1 / self.k_high], "coarse_defocus": self.coarse_defocus,
            "pixels": self.pixels, "tiles": self.tiles, "significance": self.significance,
            "warnings": list(self.warnings),
        }


class _Band:
    """The spectrum's pixels in the band, flattened by a smooth radial reference."""

    def __init__(self, spectrum: Spectrum, options: FitOptions) -> None:
        self.options = options
        self.k_low, self.k_high = options.band(spectrum.pixel_size)
        ky, kx = spectrum.frequencies()
        k = np.sqrt(ky**2 + kx**2)
        band = (k >= self.k_low) & (k <= self.k_high)
        # The kx = 0 column holds ky and -ky, the same frequency twice: keep ky > 0 only.
        band[:, 0] &= ky[:, 0] > 0
        if band.sum() < 200:
            raise ValueError(f"only {int(band.sum())} frequency pixels in the fit band: use a "
                             "larger frame or tile, or widen the band")
        self.mask = band
        self.ky = np.broadcast_to(ky, k.shape)[band]
        self.kx = np.broadcast_to(kx, k.shape)[band]
        self.k = k[band]
        self.phi = np.mod(np.degrees(np.arctan2(self.ky, self.kx)), 180.0)
        # Radial bins one frequency pixel wide.
        dk = 1.0 / (spectrum.tile * spectrum.pixel_size)
        self.edges = np.arange(self.k_low, self.k_high + dk, dk)
        self.bin = np.clip(np.searchsorted(self.edges, self.k, side="right") - 1, 0,
                           self.edges.size - 2)
        power = spectrum.power[band]
        if not np.all(power > 0):
            raise ValueError("the power spectrum has empty frequencies in the band (a constant "
                             "or clipped frame?)")
        self.reference = self._reference(power)
        self.y = power / self.reference
        self.basis = self._basis(self.k)

    def _reference(self, power: np.ndarray) -> np.ndarray:
        counts = np.bincount(self.bin, minlength=self.edges.size - 1)
        sums = np.bincount(self.bin, weights=np.log(power), minlength=self.edges.size - 1)
        kb = np.bincount(self.bin, weights=self.k, minlength=self.edges.size - 1)
        ok = counts > 0
        t = self._t(kb[ok] / counts[ok])
        coef = legendre.legfit(t, sums[ok] / counts[ok], self.options.reference_degree,
                              w=np.sqrt(counts[ok]))
        return np.exp(legendre.legval(self._t(self.k), coef))

    def _t(self, k: np.ndarray) -> np.ndarray:
        return 2.0 * (k - self.k_low) / (self.k_high - self.k_low) - 1.0

    def _basis(self, k: np.ndarray) -> np.ndarray:
        return legendre.legvander(self._t(k), self.options.degree)

    def ring_term(self, chi: np.ndarray) -> np.ndarray:
        return np.sin(chi - math.atan(self.options.absorption)) ** 2


def _solve(basis: np.ndarray, s: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    """Linear fit of y = basis b + basis s a; returns (residual, coefficients, a-mean sign ok)."""
    design = np.hstack([basis, basis * s[:, None]])
    if w is not None:
        coef = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)[0]
    else:
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
    residual = y - design @ coef
    amplitude = basis @ coef[basis.shape[1]:]
    return residual, coef, float(np.mean(amplitude)) > 0


class _Profile:
    """A radial profile of the flattened band (all pixels, or one angular sector)."""

    def __init__(self, band: _Band, select: np.ndarray | None = None) -> None:
        index = band.bin if select is None else band.bin[select]
        y = band.y if select is None else band.y[select]
        k = band.k if select is None else band.k[select]
        n = band.edges.size - 1
        counts = np.bincount(index, minlength=n).astype(np.float64)
        ok = counts > 0
        self.k = (np.bincount(index, weights=k, minlength=n)[ok] / counts[ok])
        self.y = (np.bincount(index, weights=y, minlength=n)[ok] / counts[ok])
        self.w = np.sqrt(counts[ok])
        self.basis = band._basis(self.k)
        self.band = band

    def cost(self, defocus: float, cs: float) -> float:
        o = self.band.options
        chi = astigmatic_chi(0.0, self.k, energy=o.energy, defocus=defocus, cs=cs)
        residual, _, positive = _solve(self.basis, self.band.ring_term(chi), self.y, self.w)
        value = float(np.sum((residual * self.w) ** 2))
        return value if positive else math.inf

    def search(self, defoci: np.ndarray, cs: float) -> tuple[float, np.ndarray]:
        """Best defocus (Å) on the grid ``defoci`` refined between its neighbours; all costs."""
        costs = np.array([self.cost(d, cs) for d in defoci])
        if not np.any(np.isfinite(costs)):
            raise ValueError("no defocus in the search range fits the Thon rings")
        i = int(np.argmin(costs))
        lo, hi = defoci[max(i - 1, 0)], defoci[min(i + 1, defoci.size - 1)]
        # A finite stand-in for the refused (inf) costs keeps the bracketing arithmetic finite.
        worst = 10.0 * float(np.max(costs[np.isfinite(costs)]))
        if hi > lo:
            best = minimize_scalar(lambda d: min(self.cost(d, cs), worst), bounds=(lo, hi),
                                   method="bounded", options={"xatol": 0.5})
            if best.fun <= costs[i]:
                return float(best.x), costs
        return float(defoci[i]), costs


def defocus_step(options: FitOptions, k_high: float) -> float:
    """Grid step (Å) of the coarse search: chi at k_high moves by pi/6 per step."""
    return 1.0 / (6.0 * wavelength(options.energy) * k_high**2)


def coarse_defocus(band: _Band, cs: float) -> float:
    """Effective defocus (Å) from the rotational average, isotropic model."""
    o = band.options
    step = defocus_step(o, band.k_high)
    grid = np.arange(o.defocus_min, o.defocus_max + step, step)
    best, _ = _Profile(band).search(grid, cs)
    return best


def sector_astigmatism(band: _Band, defocus: float, cs: float) -> tuple[float, float, float]:
    """(D, p, q) from 1D fits in angular sectors near ``defocus`` (Å)."""
    o = band.options
    width = 180.0 / o.sectors
    reach = min(o.max_astigmatism, 0.5 * defocus) + 2 * defocus_step(o, band.k_high)
    grid = np.arange(max(defocus - reach, 1.0), defocus + reach, defocus_step(o, band.k_high) / 3)
    angles, values = [], []
    for i in range(o.sectors):
        centre = (i + 0.5) * width
        select = np.abs(((band.phi - centre + 90.0) % 180.0) - 90.0) < width / 2
        if select.sum() < 50:
            continue
        try:
            d, _ = _Profile(band, select).search(grid, cs)
        except ValueError:
            continue
        angles.append(math.radians(2 * centre))
        values.append(d)
    if len(values) < 4:
        return defocus, 0.0, 0.0
    a = np.asarray(angles)
    design = np.stack([np.ones_like(a), -np.cos(a), -np.sin(a)], axis=1)
    values = np.asarray(values)
    coef = np.linalg.lstsq(design, values, rcond=None)[0]
    # One robust pass: sectors that locked onto a neighbouring ring are dropped.
    resid = values - design @ coef
    spread = 1.4826 * np.median(np.abs(resid - np.median(resid))) + 1.0
    keep = np.abs(resid) <= 3 * spread
    if keep.sum() >= 4 and not keep.all():
        coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
    d, p, q = (float(c) for c in coef)
    if math.hypot(p, q) > o.max_astigmatism:
        return defocus, 0.0, 0.0
    return d, p, q


def _unpack(theta: np.ndarray, options: FitOptions) -> tuple[float, float, float, float]:
    d, p, q = theta[:3]
    cs = theta[3] * _CS_UNIT if options.fit_cs else options.cs
    return float(d), float(p), float(q), float(cs)


def _lens(theta, options) -> tuple[float, float, float, float]:
    """(D, C12, phi12 degrees in [0, 180), Cs) of parameters (D, p, q[, Cs mm])."""
    d, p, q, cs = _unpack(np.asarray(theta), options)
    return d, math.hypot(p, q), math.degrees(0.5 * math.atan2(q, p)) % 180.0, cs


def _chi(band: _Band, theta) -> np.ndarray:
    d, c12, angle, cs = _lens(theta, band.options)
    return astigmatic_chi(band.ky, band.kx, energy=band.options.energy, defocus=d, cs=cs,
                          astigmatism=c12, astigmatism_angle=angle)


def _residual(band: _Band, theta) -> np.ndarray:
    residual, _, positive = _solve(band.basis, band.ring_term(_chi(band, theta)), band.y)
    # A negative ring amplitude fits cos^2 instead of sin^2 (rings a half period off): make
    # that side of parameter space costly so the refinement does not walk into it.
    return residual if positive else residual * 10.0


def fit_spectrum(spectrum: Spectrum, options: FitOptions, *,
                 start: tuple[float, float, float] | None = None) -> LensFit:
    """Fit defocus, C12, phi12 (and Cs if ``options.fit_cs``) to ``spectrum``.

    ``start`` (defocus Å, C12 Å, phi12 degrees), e.g. the previous frame of a movie, narrows
    the coarse search to ``options.track_range`` Å about its defocus and starts the refinement
    from its astigmatism; otherwise the whole range is searched.
    """
    band = _Band(spectrum, options)
    cs0 = options.cs
    warnings: list[str] = []
    if start is None:
        coarse = coarse_defocus(band, cs0)
        d, p, q = sector_astigmatism(band, coarse, cs0)
    else:
        step = defocus_step(options, band.k_high)
        grid = np.arange(start[0] - options.track_range, start[0] + options.track_range + step,
                         step)
        grid = grid[grid > 0]
        coarse, _ = _Profile(band).search(grid, cs0)
        d = coarse
        p = start[1] * math.cos(math.radians(2 * start[2]))
        q = start[1] * math.sin(math.radians(2 * start[2]))
    theta0 = [d, p, q] + ([cs0 / _CS_UNIT] if options.fit_cs else [])
    result = least_squares(lambda t: _residual(band, t), np.asarray(theta0, dtype=np.float64),
                           x_scale=[100.0, 10.0, 10.0] + ([0.1] if options.fit_cs else []),
                           method="lm")
    theta = result.x
    defocus, c12, angle, cs = _lens(theta, options)
    if not options.defocus_min <= defocus <= options.defocus_max:
        warnings.append(f"defocus {defocus:.0f} Å is outside the search range "
                        f"[{options.defocus_min:g}, {options.defocus_max:g}] Å")
    if defocus <= c12:
        warnings.append("astigmatism exceeds the defocus: Thon rings are hyperbolae, fit "
                        "unreliable")
    errors = _errors(result, theta, band)
    significance = ring_significance(band, theta)
    if significance < options.min_significance:
        raise ValueError(f"no Thon rings found (ring significance {significance:.0f} < "
                         f"{options.min_significance:g}): is this a frame of amorphous material "
                         "in focus range, with enough dose?")
    ring_k, ring_cc, resolution = _resolution(band, theta, spectrum)
    residual, coef, _ = _solve(band.basis, band.ring_term(_chi(band, theta)), band.y)
    model = band.y - residual
    correlation = float(np.corrcoef(band.y, model)[0, 1])
    if resolution is None:
        warnings.append("the Thon rings and the fit do not agree anywhere in the band")
        resolution = math.inf
    return LensFit(
        defocus=defocus, astigmatism=c12, astigmatism_angle=angle, cs=cs,
        defocus_error=errors[0], astigmatism_error=errors[1], astigmatism_angle_error=errors[2],
        cs_error=errors[3] if options.fit_cs else None, resolution=float(resolution),
        correlation=correlation, k_low=band.k_low, k_high=band.k_high, coarse_defocus=coarse,
        pixels=int(band.k.size), tiles=spectrum.tiles, significance=significance,
        warnings=tuple(warnings),
        ring_k=ring_k, ring_correlation=ring_cc,
    )


def _errors(result, theta: np.ndarray, band: _Band) -> tuple[float, float, float, float]:
    """1-sigma (D, C12, phi12 degrees, Cs) from the Gauss-Newton covariance."""
    jac = result.jac
    dof = max(jac.shape[0] - jac.shape[1] - 2 * band.basis.shape[1], 1)
    sigma2 = float(np.sum(result.fun**2)) / dof * HANN_CORRELATION
    try:
        cov = np.linalg.inv(jac.T @ jac) * sigma2
    except np.linalg.LinAlgError:
        return (math.inf,) * 4
    d, p, q = theta[:3]
    c = math.hypot(p, q)
    var_d = cov[0, 0]
    if c > 0:
        g_c = np.array([p / c, q / c])
        g_a = np.array([-q, p]) / (2 * c * c)  # d(phi12)/d(p, q), radians
        pq = cov[1:3, 1:3]
        var_c = float(g_c @ pq @ g_c)
        var_a = float(g_a @ pq @ g_a)
        angle = math.degrees(math.sqrt(max(var_a, 0.0)))
    else:
        var_c, angle = float(max(cov[1, 1], cov[2, 2])), 90.0
    var_cs = cov[3, 3] * _CS_UNIT**2 if cov.shape[0] > 3 else 0.0
    return (math.sqrt(max(var_d, 0.0)), math.sqrt(max(var_c, 0.0)), min(angle, 90.0),
            math.sqrt(max(var_cs, 0.0)))


def ring_significance(band: _Band, theta) -> float:
    """How much the ring term explains, in noise units: (RSS without rings - RSS with rings) /
    noise variance. About the number of fitted parameters (~10-20 after the searches) when
    there are no rings; hundreds or more for visible Thon rings."""
    residual, _, _ = _solve(band.basis, band.ring_term(_chi(band, theta)), band.y)
    null = band.y - band.basis @ np.linalg.lstsq(band.basis, band.y, rcond=None)[0]
    dof = max(band.y.size - 2 * band.basis.shape[1] - 4, 1)
    noise = float(residual @ residual) / dof * HANN_CORRELATION
    return float(null @ null - residual @ residual) / noise


def _resolution(band: _Band, theta, spectrum: Spectrum):
    """(k of the ring windows, their correlation, resolution Å or None).

    A window one ring period wide about each |k| (on the elliptically averaged profile) counts
    as fitted when data and model correlate above ``fit_threshold`` and the data's ring
    contrast along the model is detected at 3 sigma of the pixel noise.
    """
    d, c12, angle, cs = _lens(theta, band.options)
    o = band.options
    if d <= c12 or d <= 0:
        return np.zeros(0), np.zeros(0), None
    k2 = effective_k2((spectrum.tile, spectrum.tile), (spectrum.pixel_size,) * 2,
                      energy=o.energy, defocus=d, cs=cs, astigmatism=c12,
                      astigmatism_angle=angle, rfft=True)
    ring = band.ring_term(_chi(band, theta))
    residual, coef, _ = _solve(band.basis, ring, band.y)
    n = band.basis.shape[1]
    # Data and the model's ring term, both less the smooth background b(|k|).
    data = band.y - band.basis @ coef[:n]
    ring_model = (band.basis @ coef[n:]) * ring
    k_eff2 = k2[band.mask]
    edges = band.edges
    data_p, counts = elliptical_average(data, k_eff2, edges)
    model_p, _ = elliptical_average(ring_model, k_eff2, edges)
    resid2_p, _ = elliptical_average(residual**2, k_eff2, edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ok = counts > 0
    centres, data_p, model_p = centres[ok], data_p[ok], model_p[ok]
    var_p = resid2_p[ok] / counts[ok] * HANN_CORRELATION  # variance of each bin's mean
    lam = wavelength(o.energy)
    ring_cc = np.full(centres.size, np.nan)
    good = np.zeros(centres.size, bool)
    for i, k in enumerate(centres):
        # One ring period about k: chi moves by pi over 1 / (2 lam D k) Å^-1.
        half = max(1.0 / (4 * lam * d * k), 2.5 * (edges[1] - edges[0]))
        w = np.abs(centres - k) <= half
        if w.sum() < 4:
            continue
        m = model_p[w] - model_p[w].mean()
        x = data_p[w] - data_p[w].mean()
        if not (np.any(m) and np.any(x)):
            continue
        ring_cc[i] = float(m @ x / math.sqrt((m @ m) * (x @ x)))
        # Contrast of the data along the model, and its standard error from the pixel noise.
        amplitude = float(m @ x) / float(m @ m)
        error = math.sqrt(float((m * m) @ var_p[w])) / float(m @ m)
        good[i] = ring_cc[i] >= o.fit_threshold and amplitude > 3 * error
    if not good.any():
        return centres, ring_cc, None
    # The fit holds from the first good window up to where it first fails.
    first = int(np.argmax(good))
    last = first
    while last + 1 < good.size and good[last + 1]:
        last += 1
    return centres, ring_cc, 1.0 / centres[last]


def model_power(spectrum: Spectrum, fit: LensFit, options: FitOptions) -> np.ndarray:
    """The fitted model of the flattened spectrum (rfft grid; NaN outside the band) and the
    flattened data, as (data, model): for the diagnostic picture."""
    band = _Band(spectrum, options)
    theta = [fit.defocus, fit.astigmatism * math.cos(math.radians(2 * fit.astigmatism_angle)),
             fit.astigmatism * math.sin(math.radians(2 * fit.astigmatism_angle))]
    if options.fit_cs:
        theta.append(fit.cs / _CS_UNIT)
    residual, _, _ = _solve(band.basis, band.ring_term(_chi(band, theta)), band.y)
    data = np.full(spectrum.power.shape, np.nan)
    model = np.full(spectrum.power.shape, np.nan)
    data[band.mask] = band.y
    model[band.mask] = band.y - residual
    return data, model
