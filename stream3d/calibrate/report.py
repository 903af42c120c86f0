"""What calibrate writes: the diagnostic pictures, a config with the measured lens, a CSV."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream3d.calibrate.ellipse import effective_k2, elliptical_average
from stream3d.calibrate.fit import FitOptions, LensFit, model_power
from stream3d.calibrate.spectrum import Spectrum
from stream3d.config import Config, to_toml


def full_plane(half: np.ndarray) -> np.ndarray:
    """The (n, n) spectrum, zero frequency centred, from its rfft half plane (n, n // 2 + 1)."""
    n = half.shape[0]
    full = np.empty((n, n), dtype=half.dtype)
    full[:, : half.shape[1]] = half
    j = np.arange(half.shape[1], n)
    i = (-np.arange(n)) % n
    full[:, j] = half[i][:, n - j]  # P(-k) = P(k) for a real frame
    return np.fft.fftshift(full)


def spectrum_picture(path: Path, spectrum: Spectrum, fit: LensFit, options: FitOptions,
                     title: str) -> Path:
    """CTFFIND's diagnostic: the flattened spectrum on the left, the fitted model on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, model = model_power(spectrum, fit, options)
    data, model = full_plane(data), full_plane(model)
    n = data.shape[0]
    picture = data.copy()
    picture[:, n // 2:] = model[:, n // 2:]
    lo, hi = np.nanpercentile(data, [2, 98])
    kmax = 0.5 / spectrum.pixel_size
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    ax.imshow(picture, cmap="gray", vmin=lo, vmax=hi, origin="lower",
              extent=(-kmax, kmax, -kmax, kmax))
    ax.set_xlabel("kx (1/Å)   left: data, right: fitted model")
    ax.set_ylabel("ky (1/Å)")
    ax.set_title(f"{title}\ndefocus {fit.defocus:.0f} ± {fit.defocus_error:.0f} Å, "
                 f"C12 {fit.astigmatism:.0f} ± {fit.astigmatism_error:.0f} Å at "
                 f"{fit.astigmatism_angle:.0f}°", fontsize=9)
    # The least underfocused direction phi12 (from +x toward +y), through the centre.
    a = math.radians(fit.astigmatism_angle)
    r = 0.95 * fit.k_high
    ax.plot([-r * math.cos(a), r * math.cos(a)], [-r * math.sin(a), r * math.sin(a)], "r--",
            lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def profile_picture(path: Path, spectrum: Spectrum, fit: LensFit, options: FitOptions,
                    title: str) -> Path:
    """Ring-averaged spectrum (along the fitted ellipses) with the fit and the ring correlation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, model = model_power(spectrum, fit, options)
    band = np.isfinite(data)
    k2 = effective_k2((spectrum.tile, spectrum.tile), (spectrum.pixel_size,) * 2,
                      energy=options.energy, defocus=fit.defocus, cs=fit.cs,
                      astigmatism=min(fit.astigmatism, 0.99 * fit.defocus),
                      astigmatism_angle=fit.astigmatism_angle, rfft=True)
    dk = 1.0 / (spectrum.tile * spectrum.pixel_size)
    edges = np.arange(fit.k_low, fit.k_high + dk, dk)
    centres = 0.5 * (edges[1:] + edges[:-1])
    d, _ = elliptical_average(np.nan_to_num(data), k2, edges, band)
    m, _ = elliptical_average(np.nan_to_num(model), k2, edges, band)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 5.6), sharex=True,
                                      gridspec_kw={"height_ratios": [2.2, 1]})
    top.plot(centres, d, lw=0.9, label="spectrum (averaged along the fitted ellipses)")
    top.plot(centres, m, lw=1.2, label="fit")
    top.set_ylabel("power / smooth reference")
    top.legend(fontsize=8)
    top.set_title(title, fontsize=9)
    bottom.plot(fit.ring_k, fit.ring_correlation, lw=1.0, color="k")
    bottom.axhline(options.fit_threshold, color="r", lw=0.8, ls=":")
    if math.isfinite(fit.resolution):
        for ax in (top, bottom):
            ax.axvline(1.0 / fit.resolution, color="r", lw=0.8, ls="--")
    bottom.set_ylim(-1.05, 1.05)
    bottom.set_ylabel("ring correlation")
    bottom.set_xlabel(f"|k| (1/Å); fit holds to {fit.resolution:.2f} Å")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibrated_config(config: Config, fit: LensFit, *, dose: float | None, source: str,
                      fit_cs: bool, height: float = 0.0) -> str:
    """TOML text of ``config`` with the measured lens (and dose), each marked with its origin.

    The fit measures the scatterer's *effective* defocus (Å); the lens defocus written is that
    plus ``height``, the scatterer's height (Å) above the exit plane (docs/architecture.md: material at
    height h is seen at defocus - h), so that a reconstruction with this config puts the
    scatterer back at ``height``."""
    lens = {"defocus": round(fit.defocus + height, 1), "astigmatism": round(fit.astigmatism, 1),
            "astigmatism_angle": round(fit.astigmatism_angle, 1)}
    if fit_cs:
        lens["cs"] = round(fit.cs, -2)
    updated = config.replace("microscope", **lens)
    if dose is not None:
        updated = updated.replace("detector", dose=round(dose, 1))
    notes = {
        ("microscope", "defocus"): f"effective defocus {fit.defocus:.1f} ± "
                                   f"{fit.defocus_error:.1f} Å + height {height:g} Å",
        ("microscope", "astigmatism"): f"C12, ± {fit.astigmatism_error:.1f} Å",
        ("microscope", "astigmatism_angle"): f"phi12, ± {fit.astigmatism_angle_error:.1f}°",
        ("microscope", "cs"): f"± {fit.cs_error or 0:.3g} Å",
        ("detector", "dose"): "from the mean counts of the brightest blocks",
    }
    lines, section = [], ""
    for line in to_toml(updated).splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        key = line.split(" = ", 1)[0]
        if (section, key) in notes and (key != "cs" or fit_cs) and (key != "dose" or dose):
            line = f"{line}  # measured by stream3d calibrate: {notes[(section, key)]}"
        lines.append(line)
    header = [f"# Written by stream3d calibrate from {source}.",
              f"# The Thon rings fit to {fit.resolution:.2f} Å resolution. They give the",
              "# effective defocus of the dominant scatterer; the lens defocus (from the exit",
              f"# plane) written below adds that scatterer's height, taken as {height:g} Å above",
              "# the exit plane (calibrate --height; default: the middle of the cell).",
              ""]
    return "\n".join(header + lines) + "\n"


CSV_COLUMNS = ("frame", "defocus", "defocus_error", "astigmatism", "astigmatism_error",
               "astigmatism_angle", "astigmatism_angle_error", "resolution", "correlation",
               "dose", "error")


def write_per_frame(path: Path, rows: Sequence[dict]) -> Path:
    """CSV of per-frame fits: lengths in Å, angles in degrees, dose in e/Å²."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    return path
