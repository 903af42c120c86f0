"""Accuracy suite (issue 10): pop-out vs refined against the 3D truth on 13 frames and a movie.

    python benchmarks/accuracy.py [--quick | --cases a,b,...] [--seed N]
                                  [--simulator ours|abtem|abtem-atoms]
                                  [--material carbon|silicon] [--json FILE]
                                  [--threads 1] [--device auto]

Every frame is 256 x 256 px at 1 Å/px, 32 slices x 20 Å, 300 kV, Cs 1 mm, 10 mrad aperture,
2000 e/Å², defocus 2000 Å, no focal spread, no absorption, the default amorphous texture,
unless its case says otherwise. Specimens are drawn from --seed (positions, heights, sizes,
tilts, texture, noise), so the suite cannot be tuned on one layout. Per case it prints, for
pop-out and for the refined volume: mean column height error over the true footprint (Å; a
true column with no reconstructed material counts as the full cell depth), 3D IoU at V/2,
footprint IoU, mean thickness error (Å), the layers' recall in shared columns, the 300 Å
particle's relative thickness error, the refinement status, and the cost: refinement time /
one forward pass (multislice + image of the same volume shape, best of 3, timed right after
each refinement). On a CPU both are this process's CPU time, so a machine shared with other
work does not skew the ratio; on a GPU both are wall times. Then a growing dendrite movie
(pop-out alone, cold, warm), a uniform-start row on three cases, and PASS / FAIL for every
"Must show" criterion of issue 10 (SKIP where its cases were not run).

--cases takes case names (see --list) plus "movie", "uniform", "approach" and "insitu" (three
discs growing over a support membrane, imaged with a 3 px/frame random-walk drift, a
scintillator MTF, a 1 Å/frame defocus drift and the membrane, reconstructed with registration,
the MTF, defocus tracking and the membrane named, beside the same movie without the four
effects and without registration; --effects picks a subset); --quick runs four
representative frames only (discs, layers, dendrite, particle: ~1 min on a GPU, ~3 min on
one CPU core). The full suite is 13 frames + 3 uniform rows + 8 movie frames x 2.
--simulator abtem simulates the same potential with abTEM's multislice and CTF (the `bench`
extra), an independent check that the method does not fit our own model's quirks.
--simulator abtem-atoms fills the truth's occupancy with real atoms (--material: amorphous
carbon, the default, or silicon; see benchmarks/abtem_atoms.py) and images them with abTEM;
the reconstruction's config then gets the material's mean inner potential (sample.potential,
computed from abTEM's potential of those atoms and printed), nothing about their texture.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import pick_device, sync  # noqa: E402
from abtem_atoms import atoms_intensity, mean_inner_potential  # noqa: E402

from stream3d.analysis.accuracy import Accuracy, accuracy  # noqa: E402
from stream3d.config import Config, load  # noqa: E402
from stream3d.errors import UserError  # noqa: E402
from stream3d.physics import detect, image, multislice  # noqa: E402
from stream3d.popout import popout  # noqa: E402
from stream3d.refine import Refiner  # noqa: E402
from stream3d.simulate import simulate_intensity  # noqa: E402
from stream3d.specimen import (  # noqa: E402
    Disc, amorphous_texture, column_height, discs, occupancy_to_potential,
)
from stream3d.specimen.atoms import MATERIALS  # noqa: E402
from stream3d.specimen.membrane import add_membranes  # noqa: E402
from stream3d.specimen.suite_shapes import (  # noqa: E402
    approaching_discs, branched_dendrite, overlapping_layers, scattered_discs, thick_particle, tilted_plate,
)

#: The suite's optics and sample (issue 10), as --set overrides of the default config.
BASE = (
    "simulate.ny=256", "simulate.nx=256", "sample.pixel_size=1.0", "sample.slices=32",
    "sample.slice_thickness=20.0", "microscope.energy=300000.0", "microscope.cs=10000000.0",
    "microscope.aperture=10.0", "detector.dose=2000.0", "microscope.defocus=2000.0",
    "microscope.focal_spread=0.0", "sample.absorption=0.0",
)
MOVIE_FRAMES = 8

#: --texture FAMILY: the amorphous texture the simulator gives material, as (relative rms,
#: length Å, spectrum shape of stream3d.specimen.texture). Only the simulator sees it: the
#: reconstruction config keeps the defaults, which pop-out and refinement never read.
FAMILIES: dict[str, tuple[float, float, str]] = {
    "gaussian": (0.3, 2.0, "gaussian"),  # the default
    "narrow": (0.3, 1.2, "gaussian"),  # finer speckle: power reaches further out
    "wide": (0.3, 3.5, "gaussian"),  # coarser speckle: power falls steeply across the band
    "powerlaw": (0.3, 2.0, "powerlaw"),  # exponential correlation: a slow power-law fall-off
    "peaked": (0.3, 2.0, "peaked"),  # structure-factor-like: power rises across the band
    "weak": (0.1, 2.0, "gaussian"),
    "strong": (0.6, 2.0, "gaussian"),
}


def simulated(config: Config, family: str) -> Config:
    """``config`` with the texture of ``family`` (what the simulator, and only it, uses)."""
    strength, length, spectrum = FAMILIES[family]
    return config.replace("sample", texture=strength, texture_length=length,
                          texture_spectrum=spectrum)


@dataclass(frozen=True)
class Truth:
    """A specimen's occupancy (z, y, x) in [0, 1] and, for layered ones, each layer's."""

    occupancy: np.ndarray
    layers: tuple[np.ndarray, ...] = ()


def _discs(shape, sampling, rng) -> Truth:
    return Truth(scattered_discs(shape, sampling, rng))


def _layers(shape, sampling, rng) -> Truth:
    low, high = overlapping_layers(shape, sampling, rng)
    return Truth(np.maximum(low, high), (low, high))


def _dendrite(shape, sampling, rng) -> Truth:
    return Truth(branched_dendrite(shape, sampling, rng).occupancy(0))


def _particle(shape, sampling, rng) -> Truth:
    return Truth(thick_particle(shape, sampling, rng))


def _plate(shape, sampling, rng) -> Truth:
    return Truth(tilted_plate(shape, sampling, rng))


SPECIMENS: dict[str, Callable[..., Truth]] = {
    "discs": _discs, "layers": _layers, "dendrite": _dendrite, "particle": _particle,
    "plate": _plate,
}


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    specimen: str  # a key of SPECIMENS
    sets: tuple[str, ...] = ()  # config overrides on top of BASE


CASES = (
    Case("discs", "discs at three heights, 2000 e/Å²", "discs"),
    Case("discs_500", "discs at three heights, 500 e/Å²", "discs", ("detector.dose=500",)),
    Case("discs_100", "discs at three heights, 100 e/Å²", "discs", ("detector.dose=100",)),
    Case("layers", "two overlapping layers (~140 / ~460 Å)", "layers"),
    Case("dendrite", "branched dendrite, 15-30 Å tubes", "dendrite"),
    Case("particle", "300 Å thick particle", "particle"),
    Case("plate", "tilted plate (~150 -> ~490 Å)", "plate"),
    Case("df1500", "discs, defocus 1500 Å", "discs", ("microscope.defocus=1500",)),
    Case("df3000", "dendrite, defocus 3000 Å", "dendrite", ("microscope.defocus=3000",)),
    Case("overfocus", "discs, defocus -2000 Å", "discs", ("microscope.defocus=-2000",)),
    Case("spread30", "dendrite, focal spread 30 Å", "dendrite", ("microscope.focal_spread=30",)),
    Case("aperture5", "dendrite, aperture 5 mrad", "dendrite", ("microscope.aperture=5",)),
    Case("absorb", "discs, absorption 0.1", "discs", ("sample.absorption=0.1",)),
)
QUICK = ("discs", "layers", "dendrite", "particle")
UNIFORM = ("discs", "dendrite", "plate")  # cases that also get a uniform-start row
EXTRAS = ("movie", "uniform", "approach", "insitu")


# ---- simulation ----------------------------------------------------------------------------
def abtem_intensity(potential: np.ndarray, config: Config) -> np.ndarray:
    """Noise-free image (vacuum = 1) of a complex potential (z, y, x) V by abTEM: its
    multislice of the projected potential per slice (V·Å) and its CTF (hard aperture, same
    defocus / Cs / focal-spread conventions as DESIGN.md). Arrays go in as (z, y, x); abTEM
    reads them as (z, x, y), which only relabels the axes: no astigmatism here. It agrees with
    ours to ~0.1 % below 0.2 Å^-1; near the 2/3-Nyquist band edge its tapered antialias
    aperture differs from our hard one."""
    import abtem

    m, s = config.microscope, config.sample
    pot = abtem.PotentialArray(np.asarray(potential, dtype=np.complex64) * s.slice_thickness,
                               slice_thickness=s.slice_thickness,
                               sampling=(s.pixel_size, s.pixel_size))
    waves = abtem.PlaneWave(energy=m.energy, device="cpu").multislice(pot)
    ctf = abtem.CTF(semiangle_cutoff=m.aperture if m.aperture > 0 else np.inf, soft=False,
                    focal_spread=m.focal_spread, defocus=m.defocus, Cs=m.cs, energy=m.energy)
    intensity = waves.apply_ctf(ctf).intensity().compute(progress_bar=False)
    return np.asarray(intensity.array, dtype=np.float32)


SIMULATORS: dict[str, Callable[[np.ndarray, Config, torch.device], np.ndarray]] = {
    "ours": lambda potential, config, device: simulate_intensity(potential, config, device=device),
    "abtem": lambda potential, config, device: abtem_intensity(potential, config),
}
#: Simulators of the occupancy itself (atoms), not of our continuous potential.
ATOM_SIMULATORS = ("abtem-atoms",)


def make_frame(occupancy: np.ndarray, config: Config, *, seed: int, simulator: str = "ours",
               device: torch.device = torch.device("cpu"),
               texture: np.ndarray | None = None, material: str = "carbon",
               membranes: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """Raw counts (y, x) float32 of ``occupancy``: texture (drawn from ``seed`` unless given,
    e.g. one field for a whole movie), ``sample.membranes`` (their texture fields drawn from
    ``seed`` unless given), multislice + lens by ``simulator``, Poisson noise. An
    atom simulator (:data:`ATOM_SIMULATORS`) fills the occupancy with ``material`` atoms drawn
    from ``seed`` instead (``texture`` unused: each frame gets new atoms; no membranes)."""
    rng = np.random.default_rng(seed)
    if simulator in ATOM_SIMULATORS:
        if config.sample.membranes:
            raise UserError(f"--simulator {simulator} does not simulate sample.membranes")
        noise_free = atoms_intensity(occupancy, config, material=material, rng=rng)
    else:
        potential = occupancy_to_potential(occupancy, config.sample, rng=rng, field=texture)
        potential = add_membranes(potential, occupancy, config.sample, rng=rng, fields=membranes)
        noise_free = SIMULATORS[simulator](potential, config, device)
    intensity = torch.from_numpy(noise_free)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    counts = detect(intensity, dose=config.detector.dose, pixel_size=config.sample.pixel_size,
                    generator=gen)
    return counts.numpy().astype(np.float32)


def work_clock(device: torch.device) -> Callable[[], float]:
    """The clock costs are measured with. On a CPU device: this process's CPU time, which other
    users of a shared machine do not inflate (with one torch thread it equals the wall time on
    an idle machine). On an accelerator: wall time, synchronised."""
    if device.type == "cpu":
        return time.process_time

    def wall() -> float:
        sync(device)
        return time.perf_counter()

    return wall


def forward_seconds(config: Config, device: torch.device, repeat: int = 5) -> float:
    """Best time (s, on :func:`work_clock`) of one forward pass (multislice + image) of the
    suite's volume shape, after one warm-up pass."""
    s, m = config.sample, config.microscope
    gen = torch.Generator().manual_seed(0)
    volume = (torch.rand(s.slices, config.simulate.ny, config.simulate.nx, generator=gen)
              * s.potential).to(device)

    def once():
        with torch.no_grad():
            return image(multislice(volume, sampling=s.sampling, energy=m.energy),
                         sampling=s.sampling, energy=m.energy, defocus=m.defocus, cs=m.cs,
                         aperture=m.aperture, focal_spread=m.focal_spread)

    clock = work_clock(device)
    once()
    best = math.inf
    for _ in range(repeat):
        t0 = clock()
        once()
        best = min(best, clock() - t0)
    return best


# ---- one case ------------------------------------------------------------------------------
@dataclass
class Row:
    """One reconstruction of one frame: its metrics (None when it failed) and how it ended."""

    metrics: Accuracy | None
    status: str
    seconds: float = 0.0  # wall time of the refinement (pop-out rows: of pop-out)
    cost: float = float("nan")  # refinement time / one forward pass, both on work_clock
    forward_seconds: float = float("nan")  # that forward pass, timed right after

    def as_dict(self) -> dict:
        return {"metrics": None if self.metrics is None else self.metrics.as_dict(),
                "status": self.status, "seconds": self.seconds, "cost": self.cost,
                "forward_seconds": self.forward_seconds}


@dataclass
class CaseResult:
    case: str
    label: str
    popout: Row
    refined: Row
    uniform: Row | None = None

    def as_dict(self) -> dict:
        return {"case": self.case, "label": self.label, "popout": self.popout.as_dict(),
                "refined": self.refined.as_dict(),
                "uniform": None if self.uniform is None else self.uniform.as_dict()}


def case_config(case: Case, base: Sequence[str], extra: Sequence[str] = ()) -> Config:
    """The default config with ``base`` overrides, then the case's, then ``extra`` (the
    user's --set, which win)."""
    return load(None, [*base, *case.sets, *extra])


def score(volume: np.ndarray, truth: Truth, config: Config) -> Accuracy:
    s = config.sample
    return accuracy(volume, truth.occupancy, potential=s.potential, dz=s.slice_thickness,
                    layers=truth.layers or None)


def refine_row(refiner: Refiner, frame: np.ndarray, pop, truth: Truth, config: Config,
               forward: Callable[[], float],
               clock: Callable[[], float] = time.perf_counter) -> Row:
    """Refine one frame; a crash is a failed row (its one-line reason kept), never the end of
    the suite. The cost is the refinement's time on ``clock`` over ``forward()``, one forward
    pass on the same clock, timed right after the refinement."""
    t0, w0 = time.perf_counter(), clock()
    try:
        result = refiner.refine(frame, pop)
    except Exception as exc:  # noqa: BLE001 - the suite reports every failure and goes on
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Row(None, f"failed: {line}", time.perf_counter() - t0)
    seconds, work = time.perf_counter() - t0, clock() - w0
    t_forward = forward()
    return Row(score(result.volume, truth, config), str(result.status), seconds,
               work / t_forward, t_forward)


def popout_row(frame: np.ndarray, truth: Truth, config: Config):
    t0 = time.perf_counter()
    pop = popout(frame, config)
    return pop, Row(score(pop.volume, truth, config), "popout", time.perf_counter() - t0)


def case_seed(seed: int, *key: int) -> np.random.Generator:
    """An independent generator per (suite seed, case index, ...)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def run_case(case: Case, config: Config, *, seed: int, index: int, simulator: str,
             device: torch.device, uniform: bool = False, family: str = "gaussian",
             material: str = "carbon") -> CaseResult:
    """Simulate (texture ``family``; atoms of ``material`` for abtem-atoms), pop out and refine
    one case's frame (``config``: see :func:`case_config`); score both against the truth.
    ``index`` picks the case's own random stream."""
    s = config.sample
    shape = (s.slices, config.simulate.ny, config.simulate.nx)
    rng = case_seed(seed, index)
    truth = SPECIMENS[case.specimen](shape, s.sampling, rng)
    frame = make_frame(truth.occupancy, simulated(config, family), seed=int(rng.integers(2**31)),
                       simulator=simulator, device=device, material=material)
    pop, pop_row = popout_row(frame, truth, config)

    def forward() -> float:
        return forward_seconds(config, device, repeat=3)

    clock = work_clock(device)
    refined = refine_row(Refiner(config, device), frame, pop, truth, config, forward, clock)
    uni = None
    if uniform:
        cold = config.replace("refine", init="uniform")
        uni = refine_row(Refiner(cold, device), frame, pop, truth, cold, forward, clock)
    return CaseResult(case.name, case.label, pop_row, refined, uni)


# ---- the growing movie ---------------------------------------------------------------------
def run_movie(base: Config, *, seed: int, simulator: str, device: torch.device,
              frames: int = MOVIE_FRAMES, family: str = "gaussian", material: str = "carbon",
              progress: Callable[[str], None] = print) -> dict[str, list[Row]]:
    """A dendrite growing 15 Å per frame (one texture field of ``family`` for all frames): per
    frame the pop-out row, a cold refinement (fresh Refiner) and a warm one (one Refiner for
    the movie)."""
    sim = simulated(base, family)
    s = sim.sample
    shape = (s.slices, base.simulate.ny, base.simulate.nx)
    rng = case_seed(seed, 1000)
    tree = branched_dendrite(shape, s.sampling, rng, growth=15.0, initial_length=60.0)
    texture = amorphous_texture(shape, s.sampling, length=s.texture_length, rng=rng,
                                spectrum=s.texture_spectrum)
    warm = Refiner(base, device)
    clock = work_clock(device)

    def forward() -> float:
        return forward_seconds(base, device, repeat=3)

    rows: dict[str, list[Row]] = {"popout": [], "cold": [], "warm": []}
    for t in range(frames):
        truth = Truth(tree.occupancy(t))
        frame = make_frame(truth.occupancy, sim, seed=int(rng.integers(2**31)),
                           simulator=simulator, device=device, texture=texture,
                           material=material)
        pop, pop_row = popout_row(frame, truth, base)
        rows["popout"].append(pop_row)
        rows["cold"].append(refine_row(Refiner(base, device), frame, pop, truth, base, forward,
                                       clock))
        rows["warm"].append(refine_row(warm, frame, pop, truth, base, forward, clock))
        progress(f"  movie frame {t}: " + "  ".join(
            f"{k} {_fmt(r[-1].metrics, 'height_error', '.1f')} Å / IoU "
            f"{_fmt(r[-1].metrics, 'iou', '.2f')}" for k, r in rows.items()))
    return rows


def movie_means(rows: dict[str, list[Row]]) -> dict[str, dict[str, float]]:
    """Mean height error, IoU, footprint IoU and thickness error over the frames; NaN for a
    kind with any failed frame (a failure is not averaged away)."""
    out = {}
    for kind, rs in rows.items():
        if any(r.metrics is None for r in rs):
            out[kind] = {k: float("nan") for k in ("height_error", "iou", "footprint_iou",
                                                   "thickness_error")}
            continue
        out[kind] = {k: float(np.mean([getattr(r.metrics, k) for r in rs]))
                     for k in ("height_error", "iou", "footprint_iou", "thickness_error")}
        out[kind]["cost"] = float(np.mean([r.cost for r in rs]))
    return out


def run_approach(base: Config, *, seed: int, simulator: str, device: torch.device,
                 frames: int = MOVIE_FRAMES, family: str = "gaussian", material: str = "carbon",
                 progress: Callable[[str], None] = print) -> dict:
    """Two discs growing towards each other, never touching (gap 20 -> 2.5 px), static in z,
    one texture field for the movie, one warm Refiner: per frame the refined accuracy, how
    many objects the footprint has, whether each disc lies in its own, and each disc's
    median refined height over its true footprint (Å)."""
    from scipy import ndimage

    sim = simulated(base, family)
    s = sim.sample
    shape = (s.slices, base.simulate.ny, base.simulate.nx)
    rng = case_seed(seed, 2000)
    movie = approaching_discs(shape, s.sampling, rng, frames=frames)
    texture = amorphous_texture(shape, s.sampling, length=s.texture_length, rng=rng,
                                spectrum=s.texture_spectrum)
    warm = Refiner(base, device)
    out = {"truth_heights": [d.height for d in movie[0]], "frames": []}
    for t, items in enumerate(movie):
        occupancy = discs(shape, s.sampling, items)
        frame = make_frame(occupancy, sim, seed=int(rng.integers(2**31)), simulator=simulator,
                           device=device, texture=texture, material=material)
        result = warm.refine(frame, popout(frame, base))
        found, count = ndimage.label(np.real(result.volume).sum(axis=0) > 0)
        heights, owners = [], []
        column = column_height(np.real(result.volume) / s.potential, s.slice_thickness)
        for d in items:
            own = discs(shape, s.sampling, [d]).sum(axis=0) > 0
            owners.append(int(np.bincount(found[own], minlength=2)[1:].argmax()) + 1
                          if found[own].any() else 0)
            heights.append(float(np.nanmedian(column[own])))  # NaN: no material there
        apart = owners[0] != owners[1] and min(owners) > 0
        row = {"objects": int(count), "apart": apart, "heights": heights,
               "metrics": score(result.volume, Truth(occupancy), base).as_dict()}
        out["frames"].append(row)
        progress(f"  approach frame {t}: {count} objects, discs apart {apart}, heights "
                 + " / ".join(f"{h:.0f}" for h in heights) + " Å (truth "
                 + " / ".join(f"{d.height:.0f}" for d in items) + ")")
    return out


def approach_check(approach: dict | None) -> Check:
    """Issue 20: two tracks through every frame (no merge), a static disc's height moves at
    most 20 Å between frames."""
    name = "approaching discs: apart in every frame, height steps <= 20 Å"
    if approach is None:
        return Check(name, "SKIP", "not run")
    frames = approach["frames"]
    apart = sum(f["apart"] for f in frames)
    steps = np.abs(np.diff([f["heights"] for f in frames], axis=0)) if len(frames) > 1 else \
        np.zeros((1, 2))
    worst = float(np.max(steps))
    return Check(name, _verdict(apart == len(frames) and worst <= 20.0),
                 f"apart in {apart} of {len(frames)} frames; largest height step {worst:.1f} Å")


# ---- the in situ movie (issue 23) --------------------------------------------------------
#: The in situ movie's four effects: a random walk of this many px per frame, the camera's
#: MTF (issue 23's scintillator: half contrast at 0.25 cycles/px, i.e. mtf_half = 0.5 of
#: Nyquist), the lens defocus drifting this many Å per frame, and one support membrane (5 V,
#: the discs' own potential, 100 Å, its lower face on the exit plane).
INSITU_STEP_PX = 3.0
INSITU_DEFOCUS_DRIFT = 1.0
INSITU_MTF = {"mtf": "scintillator", "mtf_half": 0.5}
INSITU_MEMBRANE = {"material": 5.0, "height": 50.0, "thickness": 100.0}
INSITU_EFFECTS = ("drift", "mtf", "defocus", "membrane")


def insitu_config(base: Config, effects: Sequence[str]) -> Config:
    """``base`` as a user would set it for a movie with ``effects``: the camera's MTF, the
    membrane, defocus tracking (registration is on by default)."""
    config = base
    if "mtf" in effects:
        config = config.replace("detector", **INSITU_MTF)
    if "membrane" in effects:
        config = config.replace("sample", membranes=[INSITU_MEMBRANE])
    if "defocus" in effects:
        config = config.replace("microscope", track_defocus=True)
    return config


class _Inline:
    """The dask client :class:`stream3d.stream.insitu.InSitu` expects, run in this process
    (the suite replays frames in order, one at a time)."""

    class _Done:
        def __init__(self, value) -> None:
            self.value = value

        def result(self):
            return self.value

    def scatter(self, value, broadcast: bool = False):
        return value

    def submit(self, fn, *args, key: str | None = None):
        return self._Done(fn(*args))


def insitu_walk(rng: np.random.Generator, frames: int, step_px: float) -> np.ndarray:
    """(frames, 2) px: a random walk of ``step_px`` steps in random directions from (0, 0)."""
    angles = rng.uniform(0.0, 2 * np.pi, frames - 1)
    steps = step_px * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def insitu_frame(occupancy: np.ndarray, config: Config, *, texture: np.ndarray,
                 membranes: tuple[np.ndarray, ...], shift_px: tuple[float, float], seed: int,
                 simulator: str, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(raw counts, occupancy as imaged) of one in situ frame: the specimen's texture and
    membranes fixed for the movie, shifted by ``shift_px`` (Fourier shift, periodic), imaged
    by ``simulator`` at ``config``'s lens, then the camera's MTF and Poisson noise."""
    from stream3d.movie import shift_occupancy, shift_potential
    from stream3d.mtf import mtf_from_config
    from stream3d.physics import apply_mtf

    potential = occupancy_to_potential(occupancy, config.sample, field=texture)
    potential = add_membranes(potential, occupancy, config.sample, fields=membranes or None)
    potential = shift_potential(potential, shift_px)
    if simulator == "ours":  # the MTF is part of our simulator's intensity
        intensity = torch.from_numpy(simulate_intensity(potential, config, device=device))
    else:
        intensity = apply_mtf(torch.from_numpy(SIMULATORS[simulator](potential, config, device)),
                              mtf_from_config(config))
    gen = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(2**62)))
    counts = detect(intensity, dose=config.detector.dose, pixel_size=config.sample.pixel_size,
                    generator=gen)
    return counts.numpy().astype(np.float32), shift_occupancy(occupancy, shift_px)


def _insitu_replay(frames: Sequence[np.ndarray], truths: Sequence[np.ndarray], config: Config,
                   device: torch.device) -> tuple[list[Accuracy], list[tuple[float, float]]]:
    """Reconstruct a movie as ``reconstruct`` does (stream3d.stream.insitu: registration,
    lens tracking; one warm Refiner): per frame its accuracy and its stored shift (Å)."""
    from stream3d.stream.insitu import InSitu

    insitu = InSitu(config, _Inline(), lambda: frames[0], lambda: "shift")
    warm = Refiner(config, device)
    metrics, shifts = [], []
    for t, (frame, truth) in enumerate(zip(frames, truths)):
        plan = insitu.plan(t, frame)
        pop = popout(frame, plan.config)
        shift = insitu.before_refine(t, plan, warm)
        result = warm.refine(frame, pop)
        metrics.append(score(result.volume, Truth(truth), plan.config))
        shifts.append(shift if shift is not None else (math.nan, math.nan))
    return metrics, shifts


def run_insitu(base: Config, *, seed: int, simulator: str, device: torch.device,
               frames: int = MOVIE_FRAMES, family: str = "gaussian",
               effects: Sequence[str] = INSITU_EFFECTS,
               progress: Callable[[str], None] = print) -> dict:
    """Three discs growing above a support membrane, imaged with all four in situ effects
    (drift, MTF, defocus drift, membrane) and reconstructed as a user would (registration,
    the camera's MTF, defocus tracking, the membrane named), beside the same discs without
    the effects, and the in situ frames replayed without registration. Per movie the median
    IoU and column height error over the frames; the stored shift's error (px) vs the truth.
    ``effects``: a subset of :data:`INSITU_EFFECTS` (one at a time shows what each costs)."""
    from stream3d.movie import frame_config
    from stream3d.specimen.membrane import membrane_textures
    from stream3d.specimen.suite_shapes import disc_items

    s = base.sample
    shape = (s.slices, base.simulate.ny, base.simulate.nx)
    rng = case_seed(seed, 3000)
    final = disc_items(shape, s.sampling, rng, heights=(0.3, 0.55, 0.8), jitter=0.02)
    insitu = insitu_config(base, effects)
    sim_ideal, sim_insitu = simulated(base, family), simulated(insitu, family)
    texture = amorphous_texture(shape, s.sampling, length=sim_ideal.sample.texture_length,
                                rng=rng, spectrum=sim_ideal.sample.texture_spectrum)
    # its own stream: the ideal movie is the same whichever effects are on
    membranes = membrane_textures(sim_insitu.sample, shape[1], shape[2], case_seed(seed, 3001))
    walk = insitu_walk(case_seed(seed, 3002), frames, INSITU_STEP_PX) * ("drift" in effects)
    movies: dict[str, tuple[list, list]] = {"ideal": ([], []), "insitu": ([], [])}
    for t in range(frames):
        grown = [Disc(d.y, d.x, d.radius * (0.55 + 0.45 * t / max(frames - 1, 1)), d.height,
                      d.thickness) for d in final]
        occupancy = discs(shape, s.sampling, grown)
        noise = int(rng.integers(2**31))
        for name, cfg, shift, mem in (("ideal", sim_ideal, (0.0, 0.0), ()),
                                      ("insitu", sim_insitu, tuple(walk[t]), membranes)):
            lens = cfg.replace("microscope", defocus=cfg.microscope.defocus
                               + (t * INSITU_DEFOCUS_DRIFT if name == "insitu"
                                  and "defocus" in effects else 0.0))
            frame, truth = insitu_frame(occupancy, lens, texture=texture, membranes=mem,
                                        shift_px=shift, seed=noise, simulator=simulator,
                                        device=device)
            movies[name][0].append(frame)
            movies[name][1].append(truth)
    out = {"effects": list(effects), "walk_px": walk.tolist(), "movies": {}}
    runs = (("ideal", base, "ideal"), ("insitu", insitu, "insitu"),
            ("insitu, no registration", insitu.replace("stream", register=False), "insitu"))
    for name, cfg, movie in runs:
        metrics, shifts = _insitu_replay(*movies[movie], cfg, device)
        true_px = walk - walk[0] if movie == "insitu" else np.zeros_like(walk)  # ideal: still
        error = np.abs(np.asarray(shifts) / s.pixel_size - true_px)
        # Registration says "unknown" (NaN) where the correlation peak is not significant.
        unknown = int(np.isnan(error).any(axis=1).sum()) if cfg.stream.register else 0
        row = {"iou": float(np.median([m.iou for m in metrics])),
               "height_error": float(np.median([m.height_error for m in metrics])),
               "frames": [m.as_dict() for m in metrics], "shifts": shifts,
               "shift_error_px": float(np.nanmax(error)) if np.isfinite(error).any() else None,
               "unknown_shifts": unknown}
        out["movies"][name] = row
        progress(f"  in situ, {name}: median IoU {row['iou']:.3f}, column height "
                 f"{row['height_error']:.1f} Å" + ("" if row["shift_error_px"] is None else
                                                  f", stored shift within "
                                                  f"{row['shift_error_px']:.2f} px of the truth")
                 + (f", {unknown} of {len(shifts)} shifts unknown" if unknown else ""))
    return out


def insitu_check(insitu: dict | None) -> Check:
    """Issue 23: the in situ movie as accurate as the ideal one (within 0.05 IoU / 5 Å
    median), the stored shift within 0.5 px of the truth, and without registration worse."""
    name = ("in situ movie: IoU / height within 0.05 / 5 Å of the ideal movie, shift within "
            "0.5 px, worse without registration")
    if insitu is None:
        return Check(name, "SKIP", "not run")
    m = insitu["movies"]
    ideal, real, blind = m["ideal"], m["insitu"], m["insitu, no registration"]
    ok = (real["iou"] >= ideal["iou"] - 0.05
          and real["height_error"] <= ideal["height_error"] + 5.0
          and real["shift_error_px"] is not None and real["shift_error_px"] <= 0.5
          and not real.get("unknown_shifts", 0)
          and (blind["iou"] < real["iou"] or blind["height_error"] > real["height_error"]))
    return Check(name, _verdict(ok),
                 f"IoU {real['iou']:.3f} vs {ideal['iou']:.3f} ideal ({blind['iou']:.3f} "
                 f"unregistered); height {real['height_error']:.1f} vs "
                 f"{ideal['height_error']:.1f} Å ({blind['height_error']:.1f}); shift "
                 + ("-" if real["shift_error_px"] is None else
                    f"{real['shift_error_px']:.2f} px")
                 + (f", {real['unknown_shifts']} unknown" if real.get("unknown_shifts") else ""))


# ---- report --------------------------------------------------------------------------------
def _fmt(metrics: Accuracy | None, key: str, spec: str) -> str:
    if metrics is None:
        return "fail"
    value = getattr(metrics, key)
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def _extra(metrics: Accuracy | None, case: str) -> str:
    """Layer recall or particle thickness error where they mean something."""
    if metrics is None:
        return ""
    if metrics.layer_recall:
        return "recall " + "/".join(f"{r:.2f}" for r in metrics.layer_recall)
    if case == "particle":
        return f"thick {metrics.core_thickness:+.0%}"
    return ""


HEADER = (f"{'case':<11}{'row':<9}{'height Å':>9}{'IoU':>7}{'fp IoU':>8}{'thick Å':>9}"
          f"{'mass':>6}{'cost':>7}  {'status / extra'}")


def row_line(case: str, kind: str, row: Row) -> str:
    m = row.metrics
    cost = "" if math.isnan(row.cost) else f"{row.cost:.0f}"
    extra = " ".join(x for x in (row.status if kind != "pop-out" else "", _extra(m, case)) if x)
    return (f"{case:<11}{kind:<9}{_fmt(m, 'height_error', '.1f'):>9}{_fmt(m, 'iou', '.3f'):>7}"
            f"{_fmt(m, 'footprint_iou', '.3f'):>8}{_fmt(m, 'thickness_error', '.1f'):>9}"
            f"{_fmt(m, 'mass_ratio', '.2f'):>6}{cost:>7}  {extra}")


def case_lines(r: CaseResult) -> list[str]:
    lines = [row_line(r.case, "pop-out", r.popout), row_line(r.case, "refined", r.refined)]
    if r.uniform is not None:
        lines.append(row_line(r.case, "uniform", r.uniform))
    return lines


#: Å. Heights are held by refinement, but a column's centre of mass on the 20 Å slice grid
#: moves by hundredths of an Å when its thickness changes (partial slices): a difference
#: this small is a tie, not a worse height.
HEIGHT_TIE = 0.1


def at_least_as_good(r: CaseResult, tie: float = HEIGHT_TIE) -> bool:
    """Refined IoU >= pop-out's and refined height error <= pop-out's + ``tie`` Å."""
    p, q = r.popout.metrics, r.refined.metrics
    return q is not None and q.iou >= p.iou and q.height_error <= p.height_error + tie


@dataclass
class Check:
    name: str
    verdict: str  # PASS | FAIL | SKIP
    detail: str


def _verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "FAIL")


def checks(results: Sequence[CaseResult], movie: dict[str, dict[str, float]] | None
           ) -> list[Check]:
    """Every "Must show" criterion of issue 10 (and issue 20's mass) on what was run (SKIP
    where nothing was)."""
    out: list[Check] = []
    refined = [r.refined.metrics for r in results]
    if results:
        # a failed frame counts as IoU 0 and the full depth: failures cannot lift a median
        ious = [m.iou if m is not None else 0.0 for m in refined]
        heights = [m.height_error if m is not None else math.inf for m in refined]
        med_iou, med_h = float(np.median(ious)), float(np.median(heights))
        out.append(Check("median 3D IoU refined >= 0.5", _verdict(med_iou >= 0.5),
                         f"{med_iou:.3f} (goal 0.7)"))
        out.append(Check("median column height error <= 25 Å", _verdict(med_h <= 25.0),
                         f"{med_h:.1f} Å (goal 10)"))
        masses = [m.mass_ratio for m in refined
                  if m is not None and m.mass_ratio is not None and math.isfinite(m.mass_ratio)]
        med_mass = float(np.median(masses)) if masses else None
        out.append(Check("median mass ratio refined within 0.85-1.15",
                         _verdict(None if med_mass is None else 0.85 <= med_mass <= 1.15),
                         "no mass measured" if med_mass is None else f"{med_mass:.2f}"))
        good = sum(at_least_as_good(r) for r in results)
        strict = sum(at_least_as_good(r, tie=0.0) for r in results)
        iou_only = sum(at_least_as_good(r, tie=math.inf) for r in results)  # any height
        need = math.ceil(11 / 13 * len(results))
        out.append(Check("refined >= pop-out (IoU and height) on >= 11 of 13",
                         _verdict(good >= need),
                         f"{good} of {len(results)} (need {need}; heights within "
                         f"{HEIGHT_TIE} Å are ties; {strict} with no tie allowed; IoU alone "
                         f"{iou_only})"))
    by = {r.case: r for r in results}
    if "layers" in by:
        m = by["layers"].refined.metrics
        rec = m.layer_recall if m is not None else (0.0, 0.0)
        out.append(Check("overlapping layers: >= 60 % of each recovered",
                         _verdict(all(x >= 0.6 for x in rec)),
                         "recall " + " / ".join(f"{x:.2f}" for x in rec)))
    else:
        out.append(Check("overlapping layers: >= 60 % of each recovered", "SKIP", "not run"))
    if "particle" in by:
        m = by["particle"].refined.metrics
        rel = m.core_thickness if m is not None else -1.0
        out.append(Check("300 Å particle thickness within 25 %", _verdict(abs(rel) <= 0.25),
                         f"{rel:+.0%}"))
    else:
        out.append(Check("300 Å particle thickness within 25 %", "SKIP", "not run"))
    if movie is not None:
        w, c, p = (movie[k] for k in ("warm", "cold", "popout"))
        ok = (w["height_error"] <= c["height_error"] + HEIGHT_TIE
              and c["height_error"] <= p["height_error"] + HEIGHT_TIE and w["iou"] > p["iou"])
        out.append(Check("movie: warm <= cold <= pop-out (height), warm IoU > pop-out",
                         _verdict(ok),
                         f"height {w['height_error']:.1f} / {c['height_error']:.1f} / "
                         f"{p['height_error']:.1f} Å, IoU {w['iou']:.3f} / {c['iou']:.3f} / "
                         f"{p['iou']:.3f} (warm / cold / pop-out)"))
    else:
        out.append(Check("movie: warm <= cold <= pop-out (height), warm IoU > pop-out", "SKIP",
                         "not run"))
    uni = [r for r in results if r.uniform is not None]
    if uni:
        worse = sum(r.uniform.metrics is not None and r.refined.metrics is not None
                    and r.uniform.metrics.iou < r.refined.metrics.iou
                    and r.uniform.metrics.height_error > r.refined.metrics.height_error
                    for r in uni)
        failed = sum(r.uniform.metrics is None for r in uni)
        out.append(Check("uniform start reconstructed and worse than the pop-out start",
                         _verdict(failed == 0 and worse == len(uni)),
                         f"{failed} of {len(uni)} failed; worse on {worse} of {len(uni)}"))
    else:
        out.append(Check("uniform start reconstructed and worse than the pop-out start", "SKIP",
                         "not run"))
    costs = [r.refined.cost for r in results if r.refined.metrics is not None]
    if costs:
        out.append(Check("cost <= 150 forward passes per frame", _verdict(max(costs) <= 150),
                         f"max {max(costs):.0f}, median {float(np.median(costs)):.0f}"))
    else:
        out.append(Check("cost <= 150 forward passes per frame", "SKIP", "no refined frame"))
    return out


def markdown(results: Sequence[CaseResult], movie: dict | None) -> str:
    """The per-case table, the movie means and the checks as Markdown (for the README)."""

    def cell(m: Accuracy | None, key: str, spec: str) -> str:
        return _fmt(m, key, spec)

    lines = ["| case | pop-out height Å | refined height Å | pop-out IoU | refined IoU | "
             "pop-out fp IoU | refined fp IoU | pop-out thick Å | refined thick Å | cost | "
             "status | extra |", "|" + "---|" * 12]
    for r in results:
        p, q = r.popout.metrics, r.refined.metrics
        cost = "" if math.isnan(r.refined.cost) else f"{r.refined.cost:.0f}"
        extra = " ".join(x for x in (_extra(p, r.case) and f"pop-out {_extra(p, r.case)}",
                                     _extra(q, r.case) and f"refined {_extra(q, r.case)}") if x)
        if r.uniform is not None:
            u = r.uniform.metrics
            extra += (f" uniform: {r.uniform.status}" if u is None else
                      f" uniform: {u.height_error:.1f} Å, IoU {u.iou:.3f}")
        lines.append(f"| {r.label} | {cell(p, 'height_error', '.1f')} | "
                     f"{cell(q, 'height_error', '.1f')} | {cell(p, 'iou', '.3f')} | "
                     f"{cell(q, 'iou', '.3f')} | {cell(p, 'footprint_iou', '.3f')} | "
                     f"{cell(q, 'footprint_iou', '.3f')} | {cell(p, 'thickness_error', '.1f')} | "
                     f"{cell(q, 'thickness_error', '.1f')} | {cost} | {r.refined.status} | "
                     f"{extra.strip()} |")
    if movie is not None:
        lines += ["", f"| movie ({MOVIE_FRAMES} frames, means) | height Å | IoU | "
                  "footprint IoU | thickness Å |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['height_error']:.1f} | {v['iou']:.3f} | "
                  f"{v['footprint_iou']:.3f} | {v['thickness_error']:.1f} |"
                  for k, v in movie.items()]
    lines += ["", "| check | verdict | measured |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.verdict} | {c.detail} |" for c in checks(results, movie)]
    return "\n".join(lines) + "\n"


def _median_mass(metrics: Sequence[Accuracy]) -> str:
    masses = [m.mass_ratio for m in metrics if m.mass_ratio is not None]
    return f"{np.median(masses):.2f}" if masses else "-"


def summary_lines(results: Sequence[CaseResult], movie: dict | None) -> list[str]:
    lines = []
    if results:
        pops = [r.popout.metrics for r in results]
        refs = [r.refined.metrics for r in results]
        for kind, ms in (("pop-out", pops), ("refined", refs)):
            ok = [m for m in ms if m is not None]
            if ok:
                lines.append(f"median {kind:<8}: height {np.median([m.height_error for m in ok]):6.1f} Å"
                             f"  IoU {np.median([m.iou for m in ok]):.3f}"
                             f"  footprint IoU {np.median([m.footprint_iou for m in ok]):.3f}"
                             f"  thickness {np.median([m.thickness_error for m in ok]):6.1f} Å"
                             f"  mass {_median_mass(ok)}"
                             f"  ({len(ok)} of {len(ms)} frames)")
    if movie is not None:
        lines.append(f"movie ({MOVIE_FRAMES} frames, means): " + "; ".join(
            f"{k} height {v['height_error']:.1f} Å IoU {v['iou']:.3f}" for k, v in movie.items()))
    lines.append("")
    lines.extend(f"{c.verdict:<5} {c.name}: {c.detail}" for c in checks(results, movie))
    return lines


# ---- command line --------------------------------------------------------------------------
def parse_cases(text: str | None, quick: bool) -> tuple[list[Case], bool, bool]:
    """(cases, movie?, uniform rows?) from --cases / --quick; SystemExit(2) on a bad name."""
    names = {c.name: c for c in CASES}
    if text is None:
        if quick:
            return [names[n] for n in QUICK], False, False
        return list(CASES), True, True
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    bad = [w for w in wanted if w not in names and w not in EXTRAS]
    if bad:
        print(f"accuracy: unknown case {bad[0]!r}; choose from "
              f"{', '.join([*names, *EXTRAS])}", file=sys.stderr)
        raise SystemExit(2)
    return [names[w] for w in wanted if w in names], "movie" in wanted, "uniform" in wanted


# ---- the JSON report: written after every case, so a killed run keeps what it measured ---
def row_from_dict(d: dict) -> Row:
    m = d["metrics"]
    metrics = None if m is None else Accuracy(**{**m, "layer_recall": tuple(m["layer_recall"])})
    return Row(metrics, d["status"], d["seconds"], d["cost"],
               d.get("forward_seconds", float("nan")))


def case_from_dict(d: dict) -> CaseResult:
    uni = d.get("uniform")
    return CaseResult(d["case"], d["label"], row_from_dict(d["popout"]),
                      row_from_dict(d["refined"]), None if uni is None else row_from_dict(uni))


def write_report(path: Path, header: dict, results: Sequence[CaseResult],
                 movie_rows: dict[str, list[Row]] | None) -> None:
    """Every figure so far, as JSON (NaN for undefined values), replaced atomically."""
    movie = None if movie_rows is None else movie_means(movie_rows)
    report = {**header, "cases": [r.as_dict() for r in results],
              "movie": None if movie_rows is None else {
                  "frames": {k: [r.as_dict() for r in v] for k, v in movie_rows.items()},
                  "means": movie},
              "checks": [c.__dict__ for c in checks(results, movie)]}
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(report, indent=1, allow_nan=True))
    tmp.replace(path)


def read_report(path: Path, header: dict) -> tuple[dict[str, CaseResult], dict | None]:
    """(cases by name, movie rows or None) of an earlier run with the same seed, simulator and
    overrides; ValueError naming the difference otherwise."""
    old = json.loads(path.read_text())
    for key in ("seed", "simulator", "texture", "sets", "material"):
        # reports from before --texture were all of the default family
        was, now = (d.get(key, "gaussian" if key == "texture" else None) for d in (old, header))
        if was != now:
            raise ValueError(f"{path} was run with {key} {was!r}, not {now!r}")
    movie = old.get("movie")
    rows = None if movie is None else {k: [row_from_dict(r) for r in v]
                                       for k, v in movie["frames"].items()}
    return {d["case"]: case_from_dict(d) for d in old["cases"]}, rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=None, help="comma-separated case names (see --list)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {', '.join(QUICK)} (no movie, no uniform rows)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--seed", type=int, default=0, help="specimen, texture and noise seed")
    parser.add_argument("--simulator", choices=(*SIMULATORS, *ATOM_SIMULATORS), default="ours")
    parser.add_argument("--texture", choices=tuple(FAMILIES), default="gaussian",
                        help="the texture family the simulator gives material (never the "
                        "reconstruction)")
    parser.add_argument("--material", choices=tuple(MATERIALS), default="carbon",
                        help="the atoms of --simulator abtem-atoms (amorphous)")
    parser.add_argument("--effects", default=",".join(INSITU_EFFECTS),
                        help="the in situ movie's effects (comma-separated subset of "
                        f"{','.join(INSITU_EFFECTS)})")
    parser.add_argument("--json", default=None,
                        help="write every figure to this JSON file (after every case)")
    parser.add_argument("--markdown", default=None,
                        help="also write the tables as Markdown to this file (for the README)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the cases already in --json FILE (same seed, simulator, --set)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="extra section.key=value override for every case (repeatable)")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.name:<11}{c.label}")
        print(f"{'movie':<11}growing dendrite, {MOVIE_FRAMES} frames: pop-out, cold, warm")
        print(f"{'uniform':<11}refine.init=uniform rows on {', '.join(UNIFORM)}")
        print(f"{'approach':<11}two discs growing towards each other, {MOVIE_FRAMES} frames, warm")
        print(f"{'insitu':<11}discs growing over a membrane: drift, MTF, defocus drift, "
              f"{MOVIE_FRAMES} frames, vs the same without")
        return 0
    cases, with_movie, with_uniform = parse_cases(args.cases, args.quick)
    effects = [e.strip() for e in args.effects.split(",") if e.strip()]
    bad = [e for e in effects if e not in INSITU_EFFECTS]
    if bad:
        print(f"accuracy: unknown in situ effect {bad[0]!r}; choose from "
              f"{', '.join(INSITU_EFFECTS)}", file=sys.stderr)
        return 2
    named = [c.strip() for c in (args.cases or "").split(",")]
    with_approach = (args.cases is None and not args.quick) or "approach" in named
    with_insitu = (args.cases is None and not args.quick) or "insitu" in named
    if args.resume and not args.json:
        print("accuracy: --resume needs --json FILE (the run to resume)", file=sys.stderr)
        return 2
    if args.simulator != "ours":
        try:
            import abtem  # noqa: F401
            import ase  # noqa: F401
        except ImportError:
            print(f"accuracy: --simulator {args.simulator} needs abTEM and ASE "
                  "(pip install -e '.[bench]')", file=sys.stderr)
            return 2
    torch.set_num_threads(max(args.threads, 1))
    try:
        device = pick_device(args.device)
        base_sets = [*BASE, f"refine.device={device}", f"popout.threads={max(args.threads, 1)}"]
        if args.simulator in ATOM_SIMULATORS:
            # the one thing a user knows about the material: its mean inner potential
            mip = mean_inner_potential(args.material)
            print(f"{args.material}: mean inner potential {mip:.3f} V (abTEM, Lobato, from the "
                  "atoms' projected potential) -> sample.potential", flush=True)
            base_sets.append(f"sample.potential={mip:.4f}")
        base = load(None, [*base_sets, *args.sets])
    except (UserError, RuntimeError) as exc:
        print(f"accuracy: {exc}", file=sys.stderr)
        return 2
    header = {"seed": args.seed, "simulator": args.simulator, "texture": args.texture,
              "sets": list(args.sets),
              "material": args.material if args.simulator in ATOM_SIMULATORS else None,
              "device": str(device), "threads": torch.get_num_threads()}
    done: dict[str, CaseResult] = {}
    movie_rows: dict[str, list[Row]] | None = None
    json_path = Path(args.json) if args.json else None
    if args.resume and json_path.exists():
        try:
            done, movie_rows = read_report(json_path, header)
        except (ValueError, KeyError, TypeError) as exc:
            print(f"accuracy: cannot resume: {exc}", file=sys.stderr)
            return 2
    movie_rows = movie_rows if with_movie else None
    t_forward = forward_seconds(base, device)
    header["forward_seconds"] = t_forward
    s = base.sample
    print(f"accuracy suite: {base.simulate.ny}x{base.simulate.nx}x{s.slices} at "
          f"{s.pixel_size}x{s.pixel_size}x{s.slice_thickness} Å, simulator {args.simulator}, "
          f"texture {args.texture} {FAMILIES[args.texture]}, "
          f"seed {args.seed}, device {device}, {torch.get_num_threads()} thread(s); "
          f"one forward pass {t_forward * 1e3:.1f} ms", flush=True)
    print(HEADER, flush=True)
    results: list[CaseResult] = []
    t_start = time.perf_counter()
    for case in cases:
        uniform = with_uniform and case.name in UNIFORM
        r = done.get(case.name)
        if r is None or (uniform and r.uniform is None):
            index = next(i for i, c in enumerate(CASES) if c.name == case.name)
            r = run_case(case, case_config(case, base_sets, args.sets), seed=args.seed,
                         index=index, simulator=args.simulator, device=device, uniform=uniform,
                         family=args.texture, material=args.material)
        elif not uniform:
            r.uniform = None
        results.append(r)
        for line in case_lines(r):
            print(line, flush=True)
        if json_path:
            write_report(json_path, header, results, None)
    if with_movie and movie_rows is None:
        print(f"growing dendrite movie, {MOVIE_FRAMES} frames", flush=True)
        movie_rows = run_movie(base, seed=args.seed, simulator=args.simulator, device=device,
                               family=args.texture, material=args.material,
                               progress=lambda line: print(line, flush=True))
    approach = None
    if with_approach:
        print(f"approaching discs, {MOVIE_FRAMES} frames", flush=True)
        approach = run_approach(base, seed=args.seed, simulator=args.simulator, device=device,
                                family=args.texture, material=args.material,
                                progress=lambda line: print(line, flush=True))
        header["approach"] = approach
    insitu = None
    if with_insitu:
        print(f"in situ movie, {MOVIE_FRAMES} frames (and the same without its effects)",
              flush=True)
        insitu = run_insitu(base, seed=args.seed, simulator=args.simulator, device=device,
                            family=args.texture, effects=effects,
                            progress=lambda line: print(line, flush=True))
        header["insitu"] = insitu
    if json_path:
        write_report(json_path, header, results, movie_rows)
    print()
    movie = None if movie_rows is None else movie_means(movie_rows)
    for line in summary_lines(results, movie):
        print(line)
    for check in (approach_check(approach), insitu_check(insitu)):
        print(f"{check.verdict:<5} {check.name}: {check.detail}")
    print(f"(suite wall time {time.perf_counter() - t_start:.0f} s)")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results, movie))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
