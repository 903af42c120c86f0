"""``stream3d calibrate``: read frames, fit the lens, estimate the dose, write what was asked."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream3d.calibrate.dose import estimate_dose
from stream3d.calibrate.fit import FitOptions, LensFit, fit_spectrum
from stream3d.calibrate.report import (
    calibrated_config, profile_picture, spectrum_picture, write_per_frame,
)
from stream3d.calibrate.spectrum import crop_region, power_spectrum
from stream3d.calibrate.track import FocusTracker
from stream3d.config import Config
from stream3d.errors import UserError, reason

log = logging.getLogger("stream3d.calibrate")

SCATTERER_NOTE = ("the fit reports the dominant scatterer: with material at several heights "
                  "the strongest Thon rings win; use --region on a support film or cell window "
                  "to measure the lens itself")


@dataclass
class Calibration:
    """What one calibrate run measured and wrote."""

    summary: dict
    fit: LensFit
    per_frame: list[dict] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def parse_frames(text: str | None, count: int) -> range:
    """Frames ``A:B`` (Python slice, either end optional) or ``N`` of a ``count``-frame movie."""
    if text is None or text.strip() in ("", ":"):
        return range(count)
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            chosen = range(count)[slice(int(a) if a.strip() else None,
                                        int(b) if b.strip() else None)]
        else:
            n = int(text)
            chosen = range(count)[n:n + 1] if n >= 0 else range(count)[n:][:1]
    except ValueError:
        raise UserError(f"--frames {text!r} must be A:B or N (frame indices)") from None
    if len(chosen) == 0:
        raise UserError(f"--frames {text!r} selects no frame of the {count}-frame movie")
    return chosen


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    """``y0,x0,y1,x1`` in pixels (y1, x1 exclusive), or None."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise UserError(f"--region {text!r} must be four pixel indices y0,x0,y1,x1")
    return values  # type: ignore[return-value]


def parse_range(text: str | None, name: str) -> tuple[float, float] | None:
    """``LOW,HIGH`` as two floats, or None."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{name} {text!r} must be two numbers LOW,HIGH") from None
    if not 0 < low < high:
        raise UserError(f"{name} {text!r} must satisfy 0 < LOW < HIGH")
    return low, high


def open_frames(path: Path):
    """(movie with len and [i] giving (y, x) frames, pixel size Å recorded in the file or None)."""
    if path.suffix.lower() == ".npy":
        if not path.exists():
            raise UserError(f"frame file {path} does not exist")
        try:
            data = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable .npy array: {reason(exc)}") from None
        if data.ndim not in (2, 3):
            raise UserError(f"{path}: expected a frame (y, x) or a movie (t, y, x), got "
                            f"shape {data.shape}")
        return (data[None] if data.ndim == 2 else data), None
    from stream3d.io.movies import open_movie

    movie = open_movie(path)
    return movie, movie.pixel_size


def options_from(config: Config, *, fit_cs: bool, resolution: tuple[float, float] | None,
                 defocus_range: tuple[float, float] | None) -> FitOptions:
    """Fit options from the config's optics and the command's limits (Å)."""
    m = config.microscope
    low_k, high_k = 1 / 30, None
    if resolution is not None:
        low_k, high_k = 1 / resolution[1], 1 / resolution[0]
    dmin, dmax = defocus_range or (100.0, 3 * max(m.defocus, 0.0) + 2000.0)
    return FitOptions(energy=m.energy, cs=m.cs, absorption=config.sample.absorption,
                      k_low=low_k, k_high=high_k, aperture=m.aperture, defocus_min=dmin,
                      defocus_max=dmax, fit_cs=fit_cs)


def calibrate(path: Path, config: Config, *, frames: str | None = None, region: str | None = None,
              fit_cs: bool = False, resolution: str | None = None,
              defocus_range: str | None = None, tile: int | None = None,
              pixel_size: float | None = None, per_frame: bool = False, out: Path | None = None,
              write: Path | None = None, height: float | None = None) -> Calibration:
    """Fit the lens to frames of ``path`` (see ``stream3d calibrate --help``). ``height``: Å
    above the exit plane of the fitted scatterer, added to its effective defocus for the lens
    defocus that ``write`` records (None: the middle of the cell, :func:`scatterer_height`)."""
    path = Path(path)
    height = scatterer_height(config, height)
    for folder in (Path(write).parent if write is not None else None, out):
        if folder is not None:  # before the fit: a bad destination is said at once
            Path(folder).mkdir(parents=True, exist_ok=True)
    movie, recorded = open_frames(path)
    try:
        config = _recorded_energy(movie, config, path.name)
        chosen = parse_frames(frames, len(movie))
        box = parse_region(region)
        px = float(pixel_size or recorded or config.sample.pixel_size)
        if not px > 0:
            raise UserError(f"pixel size must be > 0 Å, got {px}")
        options = options_from(config, fit_cs=fit_cs,
                               resolution=parse_range(resolution, "--resolution"),
                               defocus_range=parse_range(defocus_range, "--defocus-range"))
        started = time.perf_counter()
        raw = [np.asarray(movie[i]) for i in chosen]
    finally:
        close = getattr(movie, "close", None)
        if close is not None:
            close()
    lens_frames = [crop_region(f, box) for f in raw]
    spectrum = power_spectrum(lens_frames, pixel_size=px, tile=tile)
    fit = fit_spectrum(spectrum, options)
    # The shot-noise floor is read beyond what the lens passes, whatever band was fitted.
    k_signal = dataclasses.replace(options, k_high=None, k_low=1e-9).band(px)[1]
    dose = estimate_dose(raw, spectrum, pixel_size=px, k_signal=k_signal)
    seconds = time.perf_counter() - started
    source = f"{path.name} frames {chosen.start}:{chosen.stop}" + (
        f" region {region}" if box else "")
    summary = {
        **fit.as_dict(),
        "dose": dose.dose, "frame_mean_dose": dose.frame_mean_dose,
        "dose_from_noise": dose.dose_from_noise, "counts_per_electron": dose.counts_per_electron,
        "file": str(path), "frames": [chosen.start, chosen.stop],
        "region": list(box) if box else None,
        "pixel_size": px, "energy": options.energy, "cs_fitted": fit_cs,
        "height": height, "lens_defocus": fit.defocus + height,
        "scatterer": SCATTERER_NOTE, "seconds": seconds,
    }
    result = Calibration(summary, fit)
    if per_frame:
        result.per_frame = _per_frame(raw, chosen, box, spectrum.tile, px, options, fit)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        title = f"{path.name}, {source.split(' ', 1)[1]}"
        result.paths.append(spectrum_picture(out / "spectrum.png", spectrum, fit, options, title))
        result.paths.append(profile_picture(out / "profile.png", spectrum, fit, options, title))
        json_path = out / "calibration.json"
        json_path.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
        result.paths.append(json_path)
        if per_frame:
            result.paths.append(write_per_frame(out / "per_frame.csv", result.per_frame))
    if write is not None:
        write = Path(write)
        write.parent.mkdir(parents=True, exist_ok=True)
        write.write_text(calibrated_config(config.replace("sample", pixel_size=px), fit,
                                           dose=dose.dose, source=source, fit_cs=fit_cs,
                                           height=height))
        result.paths.append(write)
    return result


def calibrate_mtf(path: Path, *, frames: str | None = None, region: str | None = None,
                  out: Path | None = None) -> Calibration:
    """The detector's MTF from the noise power spectrum of frames of ``path`` (a flat field,
    or ``region`` of vacuum / solvent): :mod:`stream3d.calibrate.noise_mtf`. With ``out``,
    writes ``mtf.txt`` (for ``detector.mtf = "file"``, ``detector.mtf_file``)."""
    from stream3d.calibrate.noise_mtf import measure_noise_mtf
    from stream3d.mtf import write_mtf_file

    path = Path(path)
    movie, _ = open_frames(path)
    try:
        chosen = parse_frames(frames, len(movie))
        box = parse_region(region)
        raw = [crop_region(np.asarray(movie[i]), box) for i in chosen]
    finally:
        close = getattr(movie, "close", None)
        if close is not None:
            close()
    measured = measure_noise_mtf(raw)
    summary = {**measured.as_dict(), "file": str(path), "frames": [chosen.start, chosen.stop],
               "region": list(box) if box else None, "method": "noise power spectrum"}
    result = Calibration(summary, None)  # type: ignore[arg-type]
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result.paths.append(write_mtf_file(
            out / "mtf.txt", measured.frequency, measured.mtf,
            comment=f"stream3d calibrate --mtf {path.name}: MTF from the noise power spectrum"))
    return result


def mtf_lines(result: Calibration) -> list[str]:
    """The MTF measurement for the terminal."""
    s = result.summary
    half = s["mtf_half"]
    lines = [f"detector MTF from the noise power spectrum: 0.5 at "
             + (f"{half:.3f} x Nyquist" if math.isfinite(half) else "no frequency (white noise: "
                "a counting camera, or no blur)")
             + f"; noise gain {s['noise_gain']:.3g} (white level / mean counts)"]
    for f, m in list(zip(s["mtf_frequency"], s["mtf"]))[::5]:
        lines.append(f"  f = {f:.2f} Nyquist: MTF {m:.3f}")
    lines += [f"wrote {p}" for p in result.paths]
    return lines


def _recorded_energy(movie, config: Config, name: str) -> Config:
    """``config`` with the voltage the movie file records (SER, EMD, DM), as a replay takes
    it: the wavelength sets where the rings fall, so a wrong one gives a wrong defocus."""
    meta = getattr(movie, "meta", None)
    energy = getattr(meta, "energy", None)
    if energy is None:
        return config
    if abs(energy - config.microscope.energy) > 0.01 * config.microscope.energy:
        log.warning("%s was recorded at %.4g kV, the config says microscope.energy = %.6g eV: "
                    "using the file's", name, energy / 1e3, config.microscope.energy)
    return config.replace("microscope", energy=energy)


def scatterer_height(config: Config, height: float | None) -> float:
    """Height (Å above the exit plane) of the scatterer whose rings were fitted: ``height``
    when given, else the middle of the cell (sample.slices x sample.slice_thickness / 2).

    One image gives only the effective defocus (lens defocus - height): where the material
    sits along the beam is not in it. Without a known reference (a support film or cell window
    at the exit plane: --height 0) the middle of the cell is the guess whose error is at most
    half the cell, and it keeps the material inside the reconstructed volume; the heights
    pop-out then measures are relative to it."""
    if height is None:
        return config.sample.slices * config.sample.slice_thickness / 2
    cell = config.sample.slices * config.sample.slice_thickness
    if not (math.isfinite(height) and 0 <= height <= cell):
        raise UserError(f"--height {height:g} Å must lie in the cell, 0 to {cell:g} Å "
                        "(sample.slices x sample.slice_thickness) above the exit plane")
    return float(height)


def _per_frame(raw, chosen, box, tile, px, options, average: LensFit) -> list[dict]:
    """One fit per frame, each started from the last good one (the average's for the first)."""
    from stream3d.calibrate.dose import bright_mean

    tracker = FocusTracker(options, pixel_size=px, region=box, tile=tile,
                           start=(average.defocus, average.astigmatism, average.astigmatism_angle))
    rows = []
    for index, frame in zip(chosen, raw):
        lens = tracker.update(frame)
        if lens.fit is None:
            rows.append({"frame": index, "defocus": math.nan, "error": lens.error})
            continue
        fit = lens.fit
        rows.append({"frame": index, "defocus": fit.defocus, "defocus_error": fit.defocus_error,
                     "astigmatism": fit.astigmatism, "astigmatism_error": fit.astigmatism_error,
                     "astigmatism_angle": fit.astigmatism_angle,
                     "astigmatism_angle_error": fit.astigmatism_angle_error,
                     "resolution": fit.resolution, "correlation": fit.correlation,
                     "dose": bright_mean(frame) / px**2})
    return rows


def _jsonable(value):
    """NaN and inf become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def summary_lines(result: Calibration) -> list[str]:
    """Human-readable lines for the terminal."""
    s, f = result.summary, result.fit
    lines = [
        f"defocus     {f.defocus:9.1f} ± {f.defocus_error:.1f} Å (effective; dominant scatterer)",
        f"astigmatism {f.astigmatism:9.1f} ± {f.astigmatism_error:.1f} Å at "
        f"{f.astigmatism_angle:.1f} ± {f.astigmatism_angle_error:.1f}° (from +x toward +y)",
    ]
    if f.cs_error is not None:
        lines.append(f"cs          {f.cs:9.4g} ± {f.cs_error:.2g} Å")
    lines.append(f"fit holds to {f.resolution:.2f} Å (band {1 / f.k_low:.1f}-{1 / f.k_high:.2f} "
                 f"Å,"
                 f" correlation {f.correlation:.2f}, {f.tiles} tiles)")
    noise = (f", {s['dose_from_noise']:.0f} e/Å² from the shot noise"
             if s["dose_from_noise"] else "")
    lines.append(f"dose        {s['dose']:9.1f} e/Å² (brightest blocks; frame mean "
                 f"{s['frame_mean_dose']:.1f}{noise})")
    if result.per_frame:
        d = np.array([r["defocus"] for r in result.per_frame], dtype=float)
        lines.append(f"per frame: {len(d)} frames, defocus {np.nanmin(d):.1f} to "
                     f"{np.nanmax(d):.1f} Å ({int(np.isnan(d).sum())} not fitted)")
    lines += [f"warning: {w}" for w in f.warnings]
    lines += [f"wrote {p}" for p in result.paths]
    return lines
