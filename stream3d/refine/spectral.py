"""A loss that sees depth: the Whittle likelihood of each region's local power spectrum.

The texture-free multislice model explains the mean image of an object (its phase contrast and
edge fringes), but its pixel loss is nearly flat in the object's height: the height is written
in the Thon rings of the amorphous texture, which that model does not hold. Known only
statistically (its power spectrum S(k), measured from the frame by pop-out,
:mod:`stream3d.popout.texture_spectrum`), the texture gives the residual image r = I - I_model
of a region an expected windowed periodogram that is a smooth, differentiable function of the
region's height shift Delta (Å):

    mu(k; Delta) = b N + a W (*) [ S(k) T(k) sum_z m_z sin^2(chi(k; D - z - Delta) - alpha) ]

- D the microscope defocus (Å, > 0 underfocus, from the exit plane); material at height z is
  seen at effective defocus D - z; a slice's material at its top face (multislice).
- m_z (Å of material x window^2) the region's material at height z: a slab of thickness t
  spreads over t, two layers give two humps, so thickness and the two-layer shape enter.
- T(k) the lens (temporal envelope squared, aperture, band limit), alpha = atan(absorption).
- W (*): the blur by the window's own power spectrum |FFT(w)|^2 (circular, on the crop grid).
- N the shot-noise periodogram sum_pixels w^2 I / (counts per unit intensity) (flat in k).
- a >= 0 (texture strength) and b > 0 (noise scale, ~1) are profiled out.

With sin^2 x = (1 - cos 2x) / 2 the sum over heights is one complex map per region,
F(k) = sum_z m_z exp(2 i c(k) z), c = pi lambda |k|^2, so

    sum_z m_z sin^2(phi0 + c (z + Delta)) = m / 2 - Re[exp(2 i (phi0 + c Delta)) F] / 2

costs one complex product per frequency, whatever the number of slices.

The measured periodogram P_b (radial bin means over the band) of n_b independent exponential
samples gives the Whittle negative log-likelihood sum_b n_b (log mu_b + P_b / mu_b); n_b = bin
pixels x (effective window area / crop area). Its curvature is the Fisher information
I(Delta) = sum_b n_b (d mu_b / d Delta)^2 / mu_b^2 (nuisance a, b projected out), whose
inverse square root is the height's standard error and the Cramer-Rao bound.

Everything is torch, on the device of the inputs; float64 internally (the likelihood sums
thousands of terms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from stream3d.optics import astigmatic_chi, interaction_constant, wavelength
from stream3d.popout import texture_spectrum
from stream3d.popout.ctf_model import Optics, delocalisation, lens_envelope
from stream3d.popout.spectrum import radial_bins

#: px, Gaussian width of the window's soft edge (a hard mask edge spreads its blur kernel).
TAPER_PX = 1.5

#: Iterations of the (a, b) profile fit (Fisher scoring of a linear model: converges in a few).
_PROFILE_ITERATIONS = 8


@dataclass(frozen=True)
class Lens:
    """What the spectral model needs of the optics (Å, eV, mrad), with the measured texture."""

    optics: Optics  # popout's Thon-ring optics (texture S(k) included)
    defocus: float  # Å, > 0 underfocus, from the exit plane

    @property
    def wavelength(self) -> float:
        return wavelength(self.optics.energy)


@dataclass
class Regions:
    """Per-region crops of the frame (R regions, G x G crop grid), fixed during the fit.

    ``window`` (R, G, G) the taper of each region (its columns, a few px into the solvent);
    ``origin`` (R, 2) int crop corner (y, x) in frame px (crops wrap around the frame);
    ``periodogram`` (R, B) measured bin means; ``noise`` (R, B) the shot-noise periodogram;
    ``samples`` (R, B) independent samples per bin; ``kernel`` (R, G, G // 2 + 1) real FFT of the
    window's power spectrum (the blur); ``mass`` (R,) Å x window^2 of material; ``rings`` (R, G, G)
    complex F(k); ``base`` (G, G) chi(k; D) - alpha; ``c`` (G, G) pi lambda |k|^2 (rad / Å);
    ``envelope`` (G, G) S T; ``bin_index`` (n_sel,) long bin of each selected half-plane
    pixel, ``select`` (G, G // 2 + 1) bool, ``counts`` (B,) pixels per bin, ``k`` (B,) Å^-1.
    """

    window: torch.Tensor
    origin: np.ndarray
    periodogram: torch.Tensor
    noise: torch.Tensor
    samples: torch.Tensor
    kernel: torch.Tensor
    mass: torch.Tensor
    rings: torch.Tensor
    base: torch.Tensor
    c: torch.Tensor
    envelope: torch.Tensor
    bin_index: torch.Tensor
    select: torch.Tensor
    counts: torch.Tensor
    k: np.ndarray

    @property
    def count(self) -> int:
        return int(self.window.shape[0])


def grow_px(lens: Lens, heights: np.ndarray, band: tuple[float, float]) -> int:
    """px a region's window grows into the solvent: as far as the lens moves the band's
    frequencies for material at ``heights`` Å (see
    :func:`stream3d.popout.ctf_model.delocalisation`; cut closer, a window loses the high-k
    rings first and the fit reads that as a smaller |defocus|)."""
    reach = delocalisation(lens.defocus - np.asarray(heights, dtype=np.float64), lens.optics,
                           *band)
    return max(int(math.ceil(reach / lens.optics.pixel_size)), 1)


def crop_size(pixel_size: float, region: float, frame: tuple[int, int], grow: int) -> int:
    """Edge (px) of the square crop a region's spectrum is taken on: a power of two holding a
    ``region`` Å cell (or a compact object of that size) grown by ``grow`` px (:func:`grow_px`)
    with its taper, at most the frame."""
    need = region / pixel_size + 2 * (grow + 3 * TAPER_PX) + 8
    size = 2 ** int(math.ceil(math.log2(max(need, 16))))
    return int(min(size, min(frame)))


def region_windows(labels: np.ndarray, count: int, size: int, grow: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(window (count, size, size) float64, origin (count, 2) int): each region's taper
    (``labels`` == r, grown ``grow`` px into the solvent, Gaussian edge TAPER_PX), cropped around
    its centre of mass (wrapping around the frame, whose multislice is periodic)."""
    ny, nx = labels.shape
    windows = np.zeros((count, size, size))
    origin = np.zeros((count, 2), dtype=int)
    solvent = labels == 0
    for r in range(1, count + 1):
        own = labels == r
        grown = own | (ndimage.binary_dilation(own, iterations=grow) & solvent)
        soft = ndimage.gaussian_filter(grown.astype(np.float64), TAPER_PX, mode="wrap")
        ys, xs = np.nonzero(own)
        cy, cx = int(round(ys.mean())), int(round(xs.mean()))
        y0, x0 = cy - size // 2, cx - size // 2
        windows[r - 1] = soft[np.ix_((y0 + np.arange(size)) % ny, (x0 + np.arange(size)) % nx)]
        origin[r - 1] = (y0, x0)
    return windows, origin


def crops(image: torch.Tensor, origin: np.ndarray, size: int) -> torch.Tensor:
    """(R, size, size) crops of a (ny, nx) image at ``origin`` (wrapping)."""
    ny, nx = image.shape
    dev = image.device
    out = []
    for y0, x0 in origin:
        iy = torch.as_tensor((y0 + np.arange(size)) % ny, device=dev)
        ix = torch.as_tensor((x0 + np.arange(size)) % nx, device=dev)
        out.append(image[iy][:, ix])
    return torch.stack(out)


def periodograms(values: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """|rfft2(w (x - weighted mean))|^2 (R, G, G // 2 + 1) of crops ``values`` (R, G, G)."""
    mean = (window * values).sum(dim=(-2, -1), keepdim=True) / window.sum(dim=(-2, -1),
                                                                         keepdim=True)
    return torch.fft.rfft2(window * (values - mean)).abs().square()


def bin_means(half: torch.Tensor, regions: Regions) -> torch.Tensor:
    """Radial bin means (R, B) of half-plane maps (R, G, G // 2 + 1)."""
    flat = half[:, regions.select]
    out = torch.zeros(half.shape[0], regions.counts.numel(), dtype=half.dtype, device=half.device)
    out.index_add_(1, regions.bin_index, flat)
    return out / regions.counts


def _blur(spectrum: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Circular convolution of a full-grid real spectrum (R, G, G) with the window's power
    spectrum (``kernel`` (R, G, G // 2 + 1) its real-to-complex FFT, real since the power
    spectrum is even, normalised to 1 at 0): the expected periodogram's shape, on the half plane
    (R, G, G // 2 + 1). Real FFTs: half the work of complex ones."""
    g = spectrum.shape[-1]
    full = torch.fft.irfft2(torch.fft.rfft2(spectrum) * kernel, s=spectrum.shape[-2:])
    return full[..., :g // 2 + 1]


def landing_phase(windows: np.ndarray, origin: np.ndarray, thickness: np.ndarray,
                  displacement: np.ndarray, *, phase_per_angstrom: float) -> np.ndarray:
    """(R, G, G) rad: for each region's window and crop-grid frequency, the mean phase that the
    texture's scattered wave carries beyond the unscattered wave where the lens lands it.

    The texture scatters from inside material, so its wave carries the material's mean phase
    phi = sigma V t (``phase_per_angstrom`` x ``thickness`` (ny, nx) Å, the start's map); it
    interferes with the unscattered wave of the point it lands on, displaced by the lens by
    ``displacement`` (R, G, G, 2) px (y, x) at each frequency. Where that point lies in the
    same material the phases cancel; beyond the object's edge (the delocalised fringes) they
    do not, and the rings there are those of sin^2(chi - alpha - phi): read as rings of another
    defocus, they bias the height low (-16.5 Å started at the truth on 60 Å discs at 5 V,
    benchmarks/height_bias.py). Averaged over the window^2 and the texture's power (the
    thickness, at the source), to first order in phi:

        <phi(source) - phi(landing)>(d) = sum_r w^2(r) t(r - d) (phi(r - d) - phi(r))
                                          / sum_r w^2(r) t(r - d),

    averaged over +-d (the frequency's two partners land on either side). Correlations by
    FFT on each region's crop padded by the largest displacement (a detector-size frame costs
    no more per region than a small one); bilinear at the fractional displacement.
    """
    ny, nx = thickness.shape
    count, size = windows.shape[0], windows.shape[-1]
    pad = int(math.ceil(float(np.abs(displacement).max(initial=0.0)))) + 1
    grid = size + 2 * pad
    out = np.zeros((count, size, size))
    for r in range(count):
        iy = (origin[r, 0] - pad + np.arange(grid)) % ny
        ix = (origin[r, 1] - pad + np.arange(grid)) % nx
        t = thickness[np.ix_(iy, ix)]
        phi = phase_per_angstrom * t
        w2 = np.zeros((grid, grid))
        w2[pad:pad + size, pad:pad + size] = windows[r] ** 2
        source, source_phase = np.conj(np.fft.fft2(t)), np.conj(np.fft.fft2(t * phi))
        weight, weighted_phase = np.fft.fft2(w2), np.fft.fft2(w2 * phi)
        # sum_r a(r) b(r - d) = ifft(fft(a) conj(fft(b)))(d); |d| <= pad, so no wrap reaches
        # the window from the crop's far side.
        total = np.fft.ifft2(weight * source).real
        shifted = np.fft.ifft2(weight * source_phase - weighted_phase * source).real
        d = displacement[r].reshape(-1, 2).T
        at = [np.stack([(sign * d[0]) % grid, (sign * d[1]) % grid]) for sign in (1.0, -1.0)]
        num = sum(ndimage.map_coordinates(shifted, c, order=1, mode="grid-wrap") for c in at)
        den = sum(ndimage.map_coordinates(total, c, order=1, mode="grid-wrap") for c in at)
        out[r] = (num / np.maximum(den, 1e-12 * max(total.max(), 1e-30))).reshape(size, size)
    return out


def displacements(lens: Lens, heights: np.ndarray, size: int) -> np.ndarray:
    """(R, G, G, 2) px (y, x): how far the lens moves each crop-grid frequency, (1 / 2 pi)
    grad chi = (Cs lambda^3 |k|^2 - lambda (D - z)) k, for each region's material seen at
    ``heights`` (R,) Å (astigmatism left out: a few % of the defocus)."""
    optics = lens.optics
    lam = lens.wavelength
    ky = np.fft.fftfreq(size, d=optics.pixel_size)
    k = np.stack(np.meshgrid(ky, ky, indexing="ij"), axis=-1)  # (G, G, 2) Å^-1
    k2 = (k ** 2).sum(-1, keepdims=True)
    effective = lens.defocus - np.asarray(heights, dtype=np.float64)
    scale = optics.cs * lam ** 3 * k2[None] - lam * effective[:, None, None, None]
    return scale * k[None] / optics.pixel_size


def build_regions(residual: torch.Tensor, intensity: torch.Tensor, labels: np.ndarray,
                  count: int, material: torch.Tensor, heights: np.ndarray, lens: Lens, *,
                  counts_per_unit: float, band: tuple[float, float], size: int,
                  potential: float) -> Regions:
    """Everything the spectral likelihood needs, fixed for the fit.

    ``residual`` (ny, nx) measured minus modelled intensity (vacuum = 1); ``intensity`` the
    measured one (its Poisson variance, I / ``counts_per_unit``, is the noise); ``labels``
    (ny, nx) regions 1..count (0 = solvent); ``material`` (nz, ny, nx) occupancy in [0, 1]
    of the start volume; ``heights`` (nz,) Å at which each slice's material is seen (its top
    face); ``band`` (k_low, k_high) Å^-1; ``size`` the crop edge (:func:`crop_size`);
    ``potential`` V of the material (its mean phase shifts the rings that land beyond it:
    :func:`landing_phase`).
    """
    dev = residual.device
    f64 = torch.float64
    optics = lens.optics
    windows, origin = region_windows(labels, count, size, grow_px(lens, heights, band))
    window = torch.as_tensor(windows, dtype=f64, device=dev)
    bins = radial_bins(size, optics.pixel_size, band[0], band[1], optics.ellipse)
    select = torch.as_tensor(np.array(bins.select), device=dev)
    inverse = np.asarray(bins.average.tocoo().row)  # per selected pixel, in column order
    columns = np.asarray(bins.average.tocoo().col)
    bin_index = np.empty(int(np.asarray(bins.select).sum()), dtype=np.int64)
    position = np.searchsorted(np.flatnonzero(np.asarray(bins.select).ravel()), columns)
    bin_index[position] = inverse
    counts = torch.as_tensor(np.array(bins.counts), dtype=f64, device=dev)

    # The crop grid's frequencies and the lens on it.
    ky = np.fft.fftfreq(size, d=optics.pixel_size)
    kyy, kxx = ky[:, None], ky[None, :]
    k = np.sqrt(kyy**2 + kxx**2)
    base = astigmatic_chi(kyy, kxx, energy=optics.energy, defocus=lens.defocus, cs=optics.cs,
                          astigmatism=optics.astigmatism,
                          astigmatism_angle=optics.astigmatism_angle) - optics.amplitude_phase
    c = math.pi * lens.wavelength * k**2
    envelope = texture_spectrum.evaluate(optics.texture, k) * lens_envelope(k, optics)

    # Material per region and height: m_z = sum over the region's window^2 of the occupancy.
    w2 = window.square()
    per_height = torch.stack([(crops_stack(material, origin[r:r + 1], size)[:, 0].to(f64)
                               * w2[r]).sum(dim=(-2, -1)) for r in range(count)], dim=1)
    z = torch.as_tensor(heights, dtype=f64, device=dev)
    c_t = torch.as_tensor(c, dtype=f64, device=dev)
    phase = torch.exp(2j * c_t[None] * z[:, None, None])  # (nz, G, G)
    rings = torch.einsum("zr,zyx->ryx", per_height.to(torch.complex128), phase)
    # Rings that land beyond their material are those of chi - alpha - phi (landing_phase).
    occ = material.detach().to(f64).cpu().numpy()
    dz = float(abs(heights[0] - heights[1])) if len(heights) > 1 else float(heights[0])
    mean_height = (per_height * z[:, None]).sum(0) / per_height.sum(0).clamp_min(1e-30)
    landing = landing_phase(windows, origin, occ.sum(axis=0) * dz,
                            displacements(lens, mean_height.cpu().numpy(), size),
                            phase_per_angstrom=interaction_constant(optics.energy) * potential)
    rings = rings * torch.exp(-2j * torch.as_tensor(landing, dtype=f64, device=dev))

    power = torch.fft.rfft2(torch.fft.fft2(window).abs().square()).real
    kernel = power / power[..., :1, :1]

    r_crops = crops(residual.to(f64), origin, size)
    half = periodograms(r_crops, window)
    variance = crops(intensity.to(f64).clamp_min(0.0), origin, size) / counts_per_unit
    regions = Regions(window=window, origin=origin, periodogram=half, noise=half,
                      samples=half, kernel=kernel, mass=per_height.sum(dim=0), rings=rings,
                      base=torch.as_tensor(base, dtype=f64, device=dev), c=c_t,
                      envelope=torch.as_tensor(envelope, dtype=f64, device=dev),
                      bin_index=torch.as_tensor(bin_index, device=dev), select=select,
                      counts=counts, k=np.asarray(bins.k))
    regions.periodogram = bin_means(half, regions)
    noise = (w2 * variance).sum(dim=(-2, -1))  # (R,): white
    regions.noise = noise[:, None].expand(-1, counts.numel()).clone()
    # Independent samples: bin pixels x the window's effective area over the crop's.
    area = w2.sum(dim=(-2, -1)).square() / w2.square().sum(dim=(-2, -1)).clamp_min(1e-30)
    regions.samples = counts[None] * (area / size**2)[:, None]
    return regions


def crops_stack(volume: torch.Tensor, origin: np.ndarray, size: int) -> torch.Tensor:
    """(nz, R, size, size) crops of a (nz, ny, nx) volume at ``origin`` (wrapping)."""
    nz, ny, nx = volume.shape
    dev = volume.device
    out = []
    for y0, x0 in origin:
        iy = torch.as_tensor((y0 + np.arange(size)) % ny, device=dev)
        ix = torch.as_tensor((x0 + np.arange(size)) % nx, device=dev)
        out.append(volume[:, iy][:, :, ix])
    return torch.stack(out, dim=1)


def ring_model(shift: torch.Tensor, regions: Regions, slope: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(M, dM/dDelta), each (R, B): the window-blurred, binned texture ring power of every
    region with its material moved up by ``shift`` (R,) Å (unit texture strength).
    Differentiable in ``shift``; ``slope`` False skips dM/dDelta (None: one blur, not two)."""
    phase = regions.base[None] + regions.c[None] * shift[:, None, None]
    turn = torch.exp(2j * phase) * regions.rings  # (R, G, G)
    half_mass = 0.5 * regions.mass[:, None, None]
    ring = regions.envelope[None] * (half_mass - 0.5 * turn.real)
    if not slope:
        return bin_means(_blur(ring, regions.kernel), regions), None
    derivative = regions.envelope[None] * regions.c[None] * turn.imag
    both = _blur(torch.stack([ring, derivative]), regions.kernel)  # one batched pair of FFTs
    return bin_means(both[0], regions), bin_means(both[1], regions)


@torch.no_grad()
def profile(model: torch.Tensor, regions: Regions) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) (R,) maximising the Whittle likelihood of P ~ a M + b N (a >= 0, b > 0):
    Fisher scoring of the linear model (iteratively reweighted least squares)."""
    p, n, s = regions.periodogram, regions.noise, regions.samples
    design = torch.stack([model, n], dim=-1)  # (R, B, 2)
    mu = p.clamp_min(1e-30)
    coef = None
    for _ in range(_PROFILE_ITERATIONS):
        weight = s / mu.square()
        normal = torch.einsum("rbi,rb,rbj->rij", design, weight, design)
        rhs = torch.einsum("rbi,rb,rb->ri", design, weight, p)
        normal = normal + 1e-12 * torch.diagonal(normal, dim1=-2, dim2=-1).mean(-1)[:, None,
                                                                               None] * torch.eye(
            2, dtype=p.dtype, device=p.device)
        coef = torch.linalg.solve(normal, rhs)
        # Constraints: a texture amplitude cannot be negative; the noise is at least a tenth of
        # the shot noise (it is known from the dose; the scale absorbs a mis-set dose).
        a = coef[:, 0].clamp_min(0.0)
        b = coef[:, 1].clamp_min(0.1)
        coef = torch.stack([a, b], dim=-1)
        mu = (design * coef[:, None, :]).sum(-1).clamp_min(1e-30)
    return coef[:, 0], coef[:, 1]


def whittle(shift: torch.Tensor, regions: Regions) -> tuple[torch.Tensor, torch.Tensor,
                                                            torch.Tensor]:
    """(NLL (R,), Fisher information of the shift (R,) Å^-2, mu (R, B)) of every region at
    ``shift`` (R,) Å, a and b profiled out. The NLL is differentiable in ``shift``; by the
    envelope theorem its gradient is the profile likelihood's (a, b sit at their optimum)."""
    nll, information, mu, _ = _whittle(shift, regions, gradient=False)
    return nll, information, mu


def _whittle(shift: torch.Tensor, regions: Regions, *, gradient: bool, information: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """(NLL (R,), Fisher information (R,) Å^-2 or None, mu (R, B), dNLL/dshift (R,) Å^-1 or
    None). The gradient is analytic (no autograd pass): dNLL/dDelta = sum_b n_b (1 / mu -
    P / mu^2) a dM/dDelta, a and b at their optimum (envelope theorem)."""
    need_slope = gradient or information
    model, slope = ring_model(shift, regions, slope=need_slope)
    a, b = profile(model.detach(), regions)
    mu = (a[:, None] * model + b[:, None] * regions.noise).clamp_min(1e-30)
    s = regions.samples
    nll = (s * (torch.log(mu) + regions.periodogram / mu)).sum(dim=1)
    info = grad = None
    if need_slope:
        with torch.no_grad():
            d_shift = a[:, None] * slope.detach()
            if information:
                info = fisher(mu.detach(), d_shift, model.detach(), regions.noise, s)
            if gradient:
                m = mu.detach()
                grad = (s * (1.0 / m - regions.periodogram / m.square()) * d_shift).sum(dim=1)
    return nll, info, mu, grad


def fisher(mu: torch.Tensor, d_shift: torch.Tensor, d_a: torch.Tensor, d_b: torch.Tensor,
           samples: torch.Tensor) -> torch.Tensor:
    """Efficient Fisher information (R,) of the shift (Å^-2) from exponential periodogram
    samples: I = sum_b n_b J J^T / mu^2 over (shift, a, b), the nuisance (a, b) projected out
    (1 / [I^-1]_00). ``d_*`` (R, B) are d mu / d parameter."""
    jac = torch.stack([d_shift, d_a, d_b], dim=-1)  # (R, B, 3)
    weight = samples / mu.square()
    info = torch.einsum("rbi,rb,rbj->rij", jac, weight, jac)
    schur = info[:, 0, 0] - torch.einsum(
        "ri,rij,rj->r", info[:, 0, 1:], torch.linalg.pinv(info[:, 1:, 1:]), info[:, 1:, 0])
    return schur.clamp_min(0.0)


@dataclass(frozen=True)
class HeightFit:
    """Per region (R,): the shift Å (0 where not significant), its standard error Å, the
    likelihood ratio 2 (NLL(0) - NLL(shift)) of the found shift, whether it moved."""

    shift: np.ndarray
    error: np.ndarray
    ratio: np.ndarray
    moved: np.ndarray
    steps: int


#: Fisher-scoring iterations per region at most (measured: converged regions take 2-5).
ITERATIONS = 8

#: Halvings of a step that does not improve the likelihood before the region stops.
BACKTRACK = 3

#: Å: a region whose step is below this has converged and stops.
CONVERGED = 1.0


def subset(regions: Regions, index: torch.Tensor) -> Regions:
    """The regions ``index`` (long, on the regions' device) of ``regions``."""
    pick = index.cpu().numpy()
    return replace(regions, window=regions.window[index], origin=regions.origin[pick],
                   periodogram=regions.periodogram[index], noise=regions.noise[index],
                   samples=regions.samples[index], kernel=regions.kernel[index],
                   mass=regions.mass[index], rings=regions.rings[index])


def fit_shifts(regions: Regions, *, limit: float, significance: float,
               prior: float = math.inf, iterations: int = ITERATIONS, max_step: float = 25.0,
               sign: float = 1.0) -> HeightFit:
    """Move every region's height to its Whittle likelihood's optimum by Fisher scoring
    (Delta <- Delta - g / I, g the analytic gradient, each step at most ``max_step`` Å and
    halved up to :data:`BACKTRACK` times until the likelihood improves), within +-``limit`` Å
    of the start, at most ``iterations`` steps. A region stops once its step is below
    :data:`CONVERGED` Å or no halving improves it; only the regions still moving are evaluated.

    Guard: a region moves only if the likelihood ratio 2 (NLL(0) - NLL(Delta)) less
    (Delta / ``prior``)^2 is at least ``significance``^2 (a z-score; ~1 dof); else it stays
    (shift 0). ``prior`` (Å) is the scale of the start's own height error, so a large move
    needs the more evidence the less likely so large an error of the start is (a Gaussian
    prior's log odds); the shift itself is the likelihood's, not pulled toward the start.
    ``sign`` = -1 flips the gradient (a test of the loss's role, never for use).
    """
    dev = regions.window.device
    count = regions.count
    shift = torch.zeros(count, dtype=torch.float64, device=dev)
    with torch.no_grad():
        start, information, _, grad = _whittle(shift, regions, gradient=True)
    current = start.clone()
    active = torch.ones(count, dtype=torch.bool, device=dev)
    steps = 0
    for iteration in range(iterations):
        index = torch.nonzero(active).flatten()
        if index.numel() == 0:
            break
        part = subset(regions, index) if index.numel() < count else regions
        if iteration > 0:
            with torch.no_grad():
                _, information, _, grad = _whittle(shift[index], part, gradient=True)
        step = -(sign * grad / information.clamp_min(1e-12)).clamp(-max_step, max_step)
        steps += 1
        base, best = shift[index], current[index]
        accepted = torch.zeros(index.numel(), dtype=torch.bool, device=dev)
        moved_by = torch.zeros_like(step)
        with torch.no_grad():
            for _ in range(BACKTRACK + 1):  # halve until the region improves (or gives up)
                candidate = (base + step).clamp(-limit, limit)
                value, _, _, _ = _whittle(candidate, part, gradient=False, information=False)
                better = (value < best) & ~accepted
                moved_by = torch.where(better, candidate - base, moved_by)
                base = torch.where(better, candidate, base)
                best = torch.where(better, value, best)
                accepted |= better
                if bool(accepted.all()):
                    break
                step = torch.where(accepted, torch.zeros_like(step), step / 2)
        shift[index], current[index] = base, best
        # Stop: no halving helped, or the step taken was below CONVERGED Å.
        done = ~accepted | (moved_by.abs() < CONVERGED)
        active[index[done]] = False
    with torch.no_grad():
        _, information, _ = whittle(shift, regions)
        ratio = 2.0 * (start - current)
        moved = ratio - (shift / prior).square() >= significance**2
        error = 1.0 / information.clamp_min(1e-12).sqrt()
        shift = torch.where(moved, shift, torch.zeros_like(shift))
    return HeightFit(shift.cpu().numpy(), error.cpu().numpy(), ratio.cpu().numpy(),
                     moved.cpu().numpy(), steps)


def lens_from_config(config, texture: tuple[float, ...] = ()) -> Lens:
    """The spectral model's lens from the config's optics (never its texture keys) and the
    measured texture spectrum ``texture`` (see :func:`texture_spectrum.evaluate`)."""
    return Lens(replace(Optics.from_config(config), texture=tuple(texture)),
                config.microscope.defocus)


def band(config) -> tuple[float, float]:
    """(k_low, k_high) Å^-1: pop-out's band, clipped to the frequencies with signal."""
    optics = Optics.from_config(config)
    return config.popout.k_low, min(config.popout.k_high, optics.k_max())


def measured_texture(regions: Regions, lens: Lens, band_: tuple[float, float]
                     ) -> tuple[float, ...]:
    """A texture spectrum from the regions' own excess spectra (when pop-out's is not at
    hand): :func:`texture_spectrum.first_estimate` on P - N, over the lens T(k)."""
    excess = (regions.periodogram - regions.noise).cpu().numpy()
    lens_t = lens_envelope(regions.k, lens.optics)
    return texture_spectrum.first_estimate(excess, lens_t, regions.k, *band_)


def with_texture(regions: Regions, lens: Lens) -> Regions:
    """``regions`` with the envelope S T of ``lens``'s texture."""
    ky = np.fft.fftfreq(regions.window.shape[-1], d=lens.optics.pixel_size)
    k = np.sqrt(ky[:, None] ** 2 + ky[None, :] ** 2)
    env = texture_spectrum.evaluate(lens.optics.texture, k) * lens_envelope(k, lens.optics)
    return replace(regions, envelope=torch.as_tensor(env, dtype=torch.float64,
                                                     device=regions.window.device))
