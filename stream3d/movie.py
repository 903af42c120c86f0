"""Simulated HRTEM movies with 3D ground truth: what ``stream3d simulate`` writes.

Per frame t: the specimen's occupancy(t) -> potential (one amorphous texture for the whole
movie, so material keeps its texture as it grows) -> optional lateral drift/jitter shift ->
multislice + lens (stream3d.physics; lens defocus + t x ``simulate.defocus_drift``) -> the
detector's MTF -> Poisson counts at the dose. Frames go to disk as they
are made: ``movie.mrc`` (raw counts), ``truth.zarr`` (occupancy and potential as imaged, i.e.
shifted with the frame), ``config.toml`` (what made them) and ``preview.png``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import torch
from scipy import ndimage

from stream3d.config import Config, ConfigError, Simulate, to_toml
from stream3d.device import resolve_device
from stream3d.errors import UserError
from stream3d.io.writers import MrcMovieWriter, TruthWriter
from stream3d.physics import detect
from stream3d.simulate import simulate_intensity
from stream3d.specimen import amorphous_texture, column_thickness, occupancy_to_potential
from stream3d.specimen.catalog import build_specimen
from stream3d.specimen.membrane import add_membranes, membrane_textures

# Independent random streams from one seed: [seed, purpose] (the dendrite uses the seed itself).
_TEXTURE, _NOISE, _JITTER, _MEMBRANE = 1, 2, 3, 4


@dataclass(frozen=True)
class MovieFiles:
    """What :func:`simulate_movie` wrote, and how long it took."""

    movie: Path
    truth: Path
    config: Path
    preview: Path
    frames: int
    seconds: float
    clipped: int  # raw pixels clipped to the uint16 range (0 unless the dose is very high)

    @property
    def paths(self) -> list[Path]:
        return [self.movie, self.truth, self.config, self.preview]


def check_simulation(config: Config) -> None:
    """Checks across sections (each section checked itself on loading): ConfigError if bad."""
    sim, s = config.simulate, config.sample
    depth = s.slices * s.slice_thickness
    if sim.depth_high > depth:
        raise ConfigError(
            f"simulate.depth_high {sim.depth_high:g} Å lies above the top of the cell "
            f"(sample.slices x sample.slice_thickness = {depth:g} Å)")


# Peak memory of one frame, in float32 volumes: occupancy, texture, complex potential (2),
# shifted copies and temporaries (measured 3.7 GB at 1024x1024x128 = 7.3 volumes).
_VOLUMES_IN_MEMORY = 8


def check_memory(config: Config) -> None:
    """UserError when one frame's volumes cannot fit in this machine's physical memory."""
    sim, s = config.simulate, config.sample
    need = _VOLUMES_IN_MEMORY * 4 * s.slices * sim.ny * sim.nx
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not every OS reports it: do not guess
        return
    if need > have:
        raise UserError(
            f"a {s.slices} x {sim.ny} x {sim.nx} grid needs about {need / 2**30:.0f} GiB of "
            f"memory per frame; this machine has {have / 2**30:.0f} GiB (reduce simulate.ny, "
            f"simulate.nx or sample.slices)")


def frame_shifts(sim: Simulate) -> np.ndarray:
    """Lateral specimen shift (dy, dx) in Å of every frame, (frames, 2) float64.

    Steady drift of ``sim.drift`` Å/frame along ``sim.drift_angle`` (degrees from +x towards
    +y) plus independent Gaussian jitter of ``sim.jitter`` Å rms per axis; frame 0 has no drift.
    """
    t = np.arange(sim.frames, dtype=np.float64)[:, None]
    angle = math.radians(sim.drift_angle)
    shifts = sim.drift * t * np.array([math.sin(angle), math.cos(angle)])
    if sim.jitter > 0:
        rng = np.random.default_rng([sim.seed, _JITTER])
        shifts = shifts + rng.normal(0.0, sim.jitter, shifts.shape)
    return shifts


def frame_config(config: Config, t: int) -> Config:
    """The config frame ``t`` is imaged with: the lens defocus drifts by
    ``simulate.defocus_drift`` Å per frame from ``microscope.defocus`` at frame 0."""
    drift = config.simulate.defocus_drift
    if not drift:
        return config
    return config.replace("microscope", defocus=config.microscope.defocus + t * drift)


def shift_occupancy(occupancy: np.ndarray, shift_px: tuple[float, float]) -> np.ndarray:
    """Occupancy moved laterally by (dy, dx) pixels, periodic; linear interpolation keeps [0, 1]."""
    if not any(shift_px):
        return occupancy
    if all(float(v).is_integer() for v in shift_px):
        return np.roll(occupancy, tuple(int(v) for v in shift_px), axis=(-2, -1))
    return ndimage.shift(occupancy, (0.0, *shift_px), order=1, mode="grid-wrap")


def shift_potential(potential: np.ndarray, shift_px: tuple[float, float]) -> np.ndarray:
    """Potential moved laterally by (dy, dx) pixels: a Fourier shift, exact on the periodic grid."""
    if not any(shift_px):
        return potential
    if all(float(v).is_integer() for v in shift_px):
        return np.roll(potential, tuple(int(v) for v in shift_px), axis=(-2, -1))
    ny, nx = potential.shape[-2:]
    ramp = np.exp(-2j * np.pi * (np.fft.fftfreq(ny)[:, None] * shift_px[0]
                                 + np.fft.fftfreq(nx)[None, :] * shift_px[1]))
    spectrum = scipy.fft.fft2(potential, axes=(-2, -1))
    spectrum *= ramp.astype(np.complex64)
    return scipy.fft.ifft2(spectrum, axes=(-2, -1), overwrite_x=True).astype(np.complex64)


def render_frame(occupancy: np.ndarray, config: Config, *, texture: np.ndarray | None,
                 shift_px: tuple[float, float] = (0.0, 0.0), noise_seed: int | list[int] = 0,
                 device: str | torch.device = "cpu", membranes: tuple[np.ndarray, ...] = (),
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One movie frame: (raw counts (y, x) float32, occupancy and complex potential as imaged).

    ``texture`` is the amorphous field (z, y, x) fixed to the specimen (None: no texture);
    the specimen is shifted by ``shift_px`` (dy, dx) pixels before imaging; the Poisson noise
    is drawn from ``noise_seed``. ``membranes``: the texture fields of ``sample.membranes``
    (:func:`~stream3d.specimen.membrane.membrane_textures`, fixed for the movie); the
    membranes drift with the specimen (they hold it).
    """
    potential = occupancy_to_potential(occupancy, config.sample, field=texture)
    potential = add_membranes(potential, occupancy, config.sample, fields=membranes or None)
    occupancy = shift_occupancy(occupancy, shift_px)
    potential = shift_potential(potential, shift_px)
    intensity = torch.from_numpy(simulate_intensity(potential, config, device=device))
    noise = torch.Generator().manual_seed(
        int(np.random.default_rng(noise_seed).integers(2**62)))
    counts = detect(intensity, dose=config.detector.dose, pixel_size=config.sample.pixel_size,
                    generator=noise)
    return counts.numpy().astype(np.float32), occupancy, potential


def _prepare_output(out: Path) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".stream3d-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to the output folder {out}: "
                        f"{exc.strerror or exc}") from None
    return out


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


def simulate_movie(config: Config, out: str | Path, *, progress: bool = True) -> MovieFiles:
    """Simulate ``config.simulate.frames`` frames and write them, with their truth, to ``out``.

    Frames are simulated and written one at a time (memory: a few copies of one (z, y, x)
    volume). The forward model runs on ``config.refine.device``.
    """
    check_simulation(config)
    check_memory(config)
    out = _prepare_output(out)
    sim, s, m, det = config.simulate, config.sample, config.microscope, config.detector
    device = resolve_device(config.refine.device)
    started = time.perf_counter()
    specimen = build_specimen(config)
    shape = (s.slices, sim.ny, sim.nx)
    texture = None
    if s.texture > 0:
        texture = amorphous_texture(shape, s.sampling, length=s.texture_length,
                                    spectrum=s.texture_spectrum,
                                    rng=np.random.default_rng([sim.seed, _TEXTURE]))
    membranes = membrane_textures(s, sim.ny, sim.nx, np.random.default_rng([sim.seed, _MEMBRANE]))
    shifts = frame_shifts(sim)
    label = (f"stream3d simulate {sim.specimen}: raw counts, {m.energy / 1e3:g} kV, "
             f"defocus {m.defocus:g} A, dose {det.dose:g} e/A2")
    movie_path, truth_path = out / "movie.mrc", out / "truth.zarr"
    (out / "config.toml").write_text(to_toml(config), encoding="utf-8")
    first = last = None
    with MrcMovieWriter(movie_path, frames=sim.frames, ny=sim.ny, nx=sim.nx, dtype=det.dtype,
                        pixel_size=s.pixel_size, label=label) as movie, _progress(progress) as bar:
        truth = TruthWriter(truth_path, config)
        task = bar.add_task(f"simulating {sim.specimen}", total=sim.frames)
        for t in range(sim.frames):
            shift_px = (shifts[t, 0] / s.pixel_size, shifts[t, 1] / s.pixel_size)
            counts, occupancy, potential = render_frame(
                specimen.occupancy(t), frame_config(config, t), texture=texture,
                shift_px=shift_px,
                noise_seed=[sim.seed, _NOISE, t], device=device, membranes=membranes)
            movie.write(t, counts)
            truth.write(t, occupancy, potential, tuple(shifts[t]))
            if t == 0:
                first = counts
            last = (counts, column_thickness(occupancy, s.slice_thickness))
            bar.advance(task)
    preview = _preview(out / "preview.png", config, first, *last)
    return MovieFiles(movie=movie_path, truth=truth_path, config=out / "config.toml",
                      preview=preview, frames=sim.frames,
                      seconds=time.perf_counter() - started, clipped=movie.clipped)


def _preview(path: Path, config: Config, first: np.ndarray, last: np.ndarray,
             thickness: np.ndarray) -> Path:
    """First and last frame beside the last frame's true thickness map, axes in nm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim, s = config.simulate, config.sample
    extent = (0, sim.nx * s.pixel_size / 10, sim.ny * s.pixel_size / 10, 0)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    panels = [(first, "frame 0", "counts / pixel", "gray"),
              (last, f"frame {sim.frames - 1}", "counts / pixel", "gray"),
              (thickness / 10, f"true thickness, frame {sim.frames - 1}", "thickness (nm)",
               "viridis")]
    for ax, (image, title, label, cmap) in zip(axes, panels):
        im = ax.imshow(image, cmap=cmap, extent=extent)
        ax.set_title(title)
        ax.set_xlabel("x (nm)")
        ax.set_ylabel("y (nm)")
        fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    fig.suptitle(f"{sim.specimen}: {config.microscope.energy / 1e3:g} kV, defocus "
                 f"{config.microscope.defocus:g} Å, {config.detector.dose:g} e/Å² per frame")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
