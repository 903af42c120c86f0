"""TOML configuration: schema with units, validation, and ``--set section.key=value`` overrides.

Every section is a frozen dataclass; a field's comment gives its unit. Loading is strict: an
unknown section or key, a wrong type or an out-of-range value raises :class:`ConfigError` with
one line naming the key. docs/architecture.md fixes the keys of [microscope], [sample], [detector],
[refine] and [stream]; sections may grow new keys but never rename these.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream3d.errors import ConfigError, UserError, reason


@dataclass(frozen=True)
class Microscope:
    energy: float = 300e3  # eV, accelerating voltage
    defocus: float = 2000.0  # Å, > 0 underfocus, measured from the exit plane
    cs: float = 1.0e7  # Å, spherical aberration (1e7 Å = 1 mm)
    aperture: float = 10.0  # mrad, hard objective aperture (0 = none)
    focal_spread: float = 30.0  # Å, 1/e half-width of the defocus spread
    astigmatism: float = 0.0  # Å, two-fold astigmatism C12 (>= 0)
    astigmatism_angle: float = 0.0  # degrees, phi12 from +x toward +y: least underfocused direction
    # reconstruct / live: fit every frame's Thon rings (stream3d.calibrate.FocusTracker) and
    # reconstruct it at its own lens defocus: ``defocus`` is the lens at the run's first frame,
    # the change of the fitted effective defocus since then is the lens's (stored, Å).
    track_defocus: bool = False

    def check(self) -> None:
        _require(self.energy > 0, "microscope.energy", "must be > 0 eV")
        _require(self.cs >= 0, "microscope.cs", "must be >= 0 Å")
        _require(self.aperture >= 0, "microscope.aperture", "must be >= 0 mrad (0 = no aperture)")
        _require(self.focal_spread >= 0, "microscope.focal_spread", "must be >= 0 Å")
        _require(self.astigmatism >= 0, "microscope.astigmatism", "must be >= 0 Å (C12; turn "
                 "the direction with astigmatism_angle)")
        _plausible(self.energy, 1e3, 5e6, "microscope.energy", "eV", "300e3 for 300 kV")
        _plausible(self.defocus, -1e6, 1e6, "microscope.defocus", "Å",
                   "2000 for 200 nm underfocus")
        _plausible(self.cs, 0.0, 1e8, "microscope.cs", "Å", "1e7 for 1 mm")
        _plausible(self.aperture, 0.0, 200.0, "microscope.aperture", "mrad", "10, or 0 for none")
        _plausible(self.focal_spread, 0.0, 1e4, "microscope.focal_spread", "Å", "30")
        _plausible(self.astigmatism, 0.0, 1e5, "microscope.astigmatism", "Å", "50")
        _require(math.isfinite(self.astigmatism_angle), "microscope.astigmatism_angle",
                 "must be a finite angle in degrees")


#: Mean inner potentials (V, against vacuum) of the membrane materials known by name
#: (electron holography: amorphous carbon ~9 V, silicon ~12 V). A membrane in contact with a
#: liquid on both sides, or of another material (SiN), takes a number instead.
MEMBRANE_MATERIALS: dict[str, float] = {"carbon": 9.0, "silicon": 12.1}


@dataclass(frozen=True)
class Membrane:
    """A support membrane: a uniform layer of amorphous material across the whole field, at a
    known height (a heating/biasing chip's window, a liquid or gas cell's two windows).

    Pop-out and refinement treat it as background (never an object); they read only
    ``material``, ``height`` and ``thickness``. The texture keys are the simulator's alone,
    like ``sample.texture*`` (None: the sample's)."""

    material: float | str = "carbon"  # V (mean inner potential vs the solvent) or a name
    height: float = 50.0  # Å above the exit plane, the membrane's centre
    thickness: float = 100.0  # Å
    texture: float | None = None  # simulator: relative rms of its amorphous texture
    texture_length: float | None = None  # simulator: Å, its texture's correlation length
    texture_spectrum: str | None = None  # simulator: "gaussian" | "powerlaw" | "peaked"

    @property
    def potential(self) -> float:
        """V: the membrane's potential (``material`` as a number, or its named value)."""
        if isinstance(self.material, str):
            return MEMBRANE_MATERIALS[self.material]
        return float(self.material)

    @property
    def bottom(self) -> float:
        """Å above the exit plane of its lower face."""
        return self.height - self.thickness / 2

    @property
    def top(self) -> float:
        """Å above the exit plane of its upper face."""
        return self.height + self.thickness / 2

    def check(self, key: str, depth: float) -> None:
        """Refuse a membrane that is not physical or not inside the cell [0, ``depth``] Å."""
        _require(isinstance(self.material, float) or self.material in MEMBRANE_MATERIALS,
                 f"{key}.material", "must be a potential in V or one of "
                 + ", ".join(f'"{k}"' for k in MEMBRANE_MATERIALS) + f", got {self.material!r}")
        if isinstance(self.material, float):
            _plausible(self.material, -1e3, 1e3, f"{key}.material", "V", "9 for carbon")
        _require(self.thickness > 0, f"{key}.thickness", "must be > 0 Å")
        _require(self.bottom >= 0 and self.top <= depth + 1e-6, key,
                 f"spans heights {self.bottom:g}..{self.top:g} Å (height ± thickness / 2), "
                 f"outside the cell 0..{depth:g} Å (sample.slices x sample.slice_thickness)")
        _require(self.texture is None or self.texture >= 0, f"{key}.texture", "must be >= 0")
        _require(self.texture_length is None or self.texture_length > 0,
                 f"{key}.texture_length", "must be > 0 Å")
        _require(self.texture_spectrum in (None, "gaussian", "powerlaw", "peaked"),
                 f"{key}.texture_spectrum", 'must be "gaussian", "powerlaw" or "peaked"')


@dataclass(frozen=True)
class Sample:
    pixel_size: float = 1.0  # Å per pixel, lateral
    slices: int = 32  # number of slices along z
    slice_thickness: float = 20.0  # Å per slice
    potential: float = 5.0  # V, material minus solvent (real part)
    absorption: float = 0.1  # imaginary / real ratio of the material potential
    # The amorphous texture the *simulator* gives material (pop-out and refinement never read
    # these: they measure the texture from the frames, as they must for a real specimen).
    texture: float = 0.3  # relative rms of the amorphous potential fluctuation
    texture_length: float = 2.0  # Å, correlation length of the amorphous texture
    texture_spectrum: str = "gaussian"  # "gaussian" | "powerlaw" | "peaked" (specimen/texture.py)
    # Support membranes under / around the objects: [{material = "carbon" (or V), height = Å
    # above the exit plane (centre), thickness = Å}, ...]. () = the objects float in solvent.
    membranes: tuple[Membrane, ...] = ()

    def check(self) -> None:
        _require(self.pixel_size > 0, "sample.pixel_size", "must be > 0 Å")
        _require(self.slices >= 1, "sample.slices", "must be >= 1")
        _require(self.slice_thickness > 0, "sample.slice_thickness", "must be > 0 Å")
        _require(self.absorption >= 0, "sample.absorption", "must be >= 0")
        _require(self.texture >= 0, "sample.texture", "must be >= 0")
        _require(self.texture_length > 0, "sample.texture_length", "must be > 0 Å")
        _require(self.texture_spectrum in ("gaussian", "powerlaw", "peaked"),
                 "sample.texture_spectrum", 'must be "gaussian", "powerlaw" or "peaked"')
        _plausible(self.pixel_size, 1e-3, 1e4, "sample.pixel_size", "Å", "1.0")
        _plausible(self.slices, 1, 4096, "sample.slices", "slices", "32")
        _plausible(self.slice_thickness, 0.1, 1e5, "sample.slice_thickness", "Å", "20")
        _plausible(self.potential, -1e3, 1e3, "sample.potential", "V", "5")
        for i, membrane in enumerate(self.membranes):
            membrane.check(f"sample.membranes[{i}]", self.slices * self.slice_thickness)
        layers = sorted(self.membranes, key=lambda m: m.bottom)
        for low, high in zip(layers, layers[1:]):
            _require(high.bottom >= low.top - 1e-6, "sample.membranes",
                     f"overlap: {low.bottom:g}..{low.top:g} Å and {high.bottom:g}..{high.top:g} Å")

    @property
    def sampling(self) -> tuple[float, float, float]:
        """(dz, dy, dx) in Å."""
        return (self.slice_thickness, self.pixel_size, self.pixel_size)


# detector.dose's one non-number: the dose is counted from the frames (stream3d.io.dose).
AUTO_DOSE = "auto"


@dataclass(frozen=True)
class Detector:
    # e/Å² per frame; raw counts have mean dose * pixel_size². "auto": estimated from the
    # frames' counts (reconstruct, live, info only).
    dose: float | str = 2000.0
    dtype: str = "uint16"  # raw frame dtype written by simulate / camera: "uint16" | "float32"
    # Modulation transfer function of the camera (stream3d.mtf): "none" (perfect), "counting"
    # (the pixel's sinc), "scintillator" (1 / (1 + (f / mtf_half)²)), or "file" (mtf_file).
    mtf: str = "none"
    mtf_half: float = 0.25  # frequency / Nyquist where the scintillator curve is 0.5
    mtf_file: str = ""  # two-column text: frequency / Nyquist, MTF (read when mtf = "file")

    def check(self) -> None:
        _require(self.dose == AUTO_DOSE or (not isinstance(self.dose, str) and self.dose > 0),
                 "detector.dose", 'must be > 0 e/Å² or "auto"')
        if self.dose != AUTO_DOSE:
            _plausible(self.dose, 0.0, 1e8, "detector.dose", "e/Å² per frame", "2000")
        _require(self.dtype in ("uint16", "float32"), "detector.dtype",
                 'must be "uint16" or "float32"')
        _require(self.mtf in MTF_KINDS, "detector.mtf",
                 "must be one of " + ", ".join(f'"{k}"' for k in MTF_KINDS))
        _require(0 < self.mtf_half <= 10, "detector.mtf_half",
                 "must be > 0 and <= 10 (frequency in units of Nyquist, e.g. 0.25)")
        _require(self.mtf != "file" or bool(self.mtf_file), "detector.mtf_file",
                 'must name a two-column text file (frequency / Nyquist, MTF) when '
                 'detector.mtf = "file"')
        if self.mtf == "file":  # read now: a bad curve is refused before anything runs
            from stream3d.mtf import read_mtf_file

            read_mtf_file(self.mtf_file)


@dataclass(frozen=True)
class Refine:
    iterations: int = 8  # optimiser iterations per frame; 0 = pop-out only
    init: str = "popout"  # "popout" | "uniform"
    device: str = "auto"  # torch device: "auto" (cuda if present, else cpu), "cpu", "cuda:0", ...
    loss: str = "l2"  # "l2" on dose-normalised intensity | "poisson" deviance of the counts
    learning_rate: float = 10.0  # Å of column thickness per optimiser step
    tv_lateral: float = 1e-4  # data-loss units per V: weight of the lateral L1 total variation
    tv_axial: float = 1e-4  # data-loss units per V: weight of the axial L1 total variation
    plateau_window: int = 5  # iterations over which the plateau rule looks back
    plateau_tolerance: float = 1e-3  # relative improvement over the window that counts as none
    significance: float = 2.0  # z-score of an object's loss drop that keeps its refined shape
    # Fit each region's height by the texture's spectral likelihood (refine/heights.py; tiled
    # frames fit it once on the whole frame). Measured on the accuracy suite (seed 0): median
    # height 33.7 -> 25.2 Å, IoU 0.40 -> 0.50 on the default texture family.
    heights: bool = True
    height_significance: float = 2.0  # z-score (sqrt of the likelihood ratio) a height move needs
    height_limit: float = 150.0  # Å, largest height move searched per region
    window: int = 8  # px, an object's loss window extends this far beyond it
    warm_blend: float = 0.25  # weight of the previous frame's heights in a warm start (vs pop-out's)
    scene_change: float = 2.0  # warm start replaced by pop-out where loss > this x before
    # px, edge of the largest square crop refined at once (halo included): memory follows it,
    # not the frame; larger frames are refined as overlapping tiles (stream3d.refine.tiles).
    # 0 = always the whole frame.
    tile: int = 512

    def check(self) -> None:
        _require(self.iterations >= 0, "refine.iterations", "must be >= 0")
        _require(self.init in ("popout", "uniform"), "refine.init", 'must be "popout" or "uniform"')
        _require(self.loss in ("l2", "poisson"), "refine.loss", 'must be "l2" or "poisson"')
        _require(self.learning_rate > 0, "refine.learning_rate", "must be > 0 Å")
        for key in ("tv_lateral", "tv_axial", "significance", "window", "plateau_tolerance",
                    "height_significance", "height_limit"):
            _require(getattr(self, key) >= 0, f"refine.{key}", "must be >= 0")
        _require(self.plateau_window >= 1, "refine.plateau_window", "must be >= 1")
        _require(0 <= self.warm_blend <= 1, "refine.warm_blend", "must be in [0, 1]")
        _require(self.scene_change > 1, "refine.scene_change", "must be > 1")
        _require(self.tile >= 0, "refine.tile", "must be >= 0 px (0 = the whole frame)")


@dataclass(frozen=True)
class Stream:
    policy: str = "all"  # "all": reconstruct every frame | "latest": stay live, skip behind
    frame_interval: float = 0.1  # s between frames of a replayed movie (live: from timestamps)
    window: int = 4  # frames, pop-out tasks in flight on dask ahead of the refiner
    queue: int = 64  # frames held in RAM between ingest and compute (more: read back from store)
    write_batch: int = 32  # frames, most raw frames persisted by one store write
    hwm: int = 100  # messages queued in ZeroMQ (PUB drops beyond, PUSH blocks); RAM = hwm x frame
    torch_threads: int = 0  # CPU threads of refinement; 0 = cores - 1 (one left for the rest)
    curve_server_key: str = ""  # CURVE: receiver's NAME.key_secret / sender's copy of NAME.key
    curve_client_key: str = ""  # CURVE: a sender's own NAME.key_secret ("" = no CURVE)
    curve_clients: str = ""  # CURVE: folder of allowed senders' NAME.key ("" = any key pair)
    protocol: str = "native"  # wire protocol of `live`: "native" | "dectris" (SIMPLON stream v2)
    channel: str = ""  # DECTRIS channel stored (e.g. "threshold_1"); "" = the start's first
    # px of the raw frame, [y0, x0, y1, x1] (y1, x1 exclusive); () = the whole frame. Compute
    # sees only this region; the raw frame is stored whole (stream3d.view).
    roi: tuple[int, ...] = ()
    bin: int = 1  # sum bin x bin blocks of counts before compute (pixel size x bin)
    # Registration (stream3d.register): each frame's drift against the run's first frame,
    # stored as ``shift`` (Å); the warm start is moved by it.
    register: bool = True
    max_shift: float = 50.0  # Å, a jump between consecutive frames beyond this: a new scene (cold)

    def check(self) -> None:
        _require(self.policy in ("all", "latest"), "stream.policy", 'must be "all" or "latest"')
        _require(self.frame_interval > 0, "stream.frame_interval", "must be > 0 s")
        _require(self.window >= 1, "stream.window", "must be >= 1 frame")
        _require(self.queue >= 1, "stream.queue", "must be >= 1 frame")
        _require(self.write_batch >= 1, "stream.write_batch", "must be >= 1 frame")
        _require(self.hwm >= 1, "stream.hwm", "must be >= 1 message")
        _require(self.torch_threads >= 0, "stream.torch_threads", "must be >= 0 (0 = automatic)")
        _require(self.protocol in ("native", "dectris"), "stream.protocol",
                 'must be "native" or "dectris"')
        _require(self.bin >= 1, "stream.bin", "must be an integer >= 1 (1 = no binning)")
        _check_roi(self.roi, self.bin)
        _require(self.max_shift > 0, "stream.max_shift", "must be > 0 Å")


# Detector MTF models (stream3d.mtf); "file": a measured curve from detector.mtf_file.
MTF_KINDS = ("none", "counting", "scintillator", "file")

# Specimen kinds `stream3d simulate` can build (stream3d.specimen.catalog maps each to a builder).
SPECIMEN_KINDS = ("dendrite", "discs", "tilted_slab", "two_layers", "growing_discs")


@dataclass(frozen=True)
class Simulate:
    frames: int = 10  # frames in the movie
    ny: int = 256  # pixels along y
    nx: int = 256  # pixels along x
    frame_interval: float = 0.1  # s between frames
    specimen: str = "dendrite"  # "dendrite" | "discs" | "tilted_slab" | "two_layers" | "growing_discs"
    branches: int = 8  # dendrite: number of branches (up to 4 arms from the nucleus + side branches)
    growth: float = 10.0  # Å per frame, dendrite tip advance (growing_discs: radius growth)
    radius_min: float = 20.0  # Å, thinnest dendrite branch
    radius_max: float = 30.0  # Å, thickest dendrite branch (the arms)
    initial_length: float = 40.0  # Å, dendrite arm length already grown in frame 0
    thickness: float = 80.0  # Å, thickness of discs / tilted slab / layers
    depth_low: float = 100.0  # Å above the exit plane: all material lies above this height
    depth_high: float = 540.0  # Å above the exit plane: all material lies below this height
    seed: int = 0  # random seed: specimen, texture, noise and jitter
    drift: float = 0.0  # Å per frame, steady lateral drift of the specimen
    drift_angle: float = 0.0  # degrees, drift direction from +x towards +y
    jitter: float = 0.0  # Å rms per axis, random lateral shake of each frame
    defocus_drift: float = 0.0  # Å per frame, change of the lens defocus (frame t: + t x this)

    def check(self) -> None:
        _require(self.frames >= 1, "simulate.frames", "must be >= 1")
        _require(self.ny >= 8, "simulate.ny", "must be >= 8 pixels")
        _require(self.nx >= 8, "simulate.nx", "must be >= 8 pixels")
        _require(self.frame_interval > 0, "simulate.frame_interval", "must be > 0 s")
        _require(self.specimen in SPECIMEN_KINDS, "simulate.specimen",
                 "must be one of " + ", ".join(f'"{k}"' for k in SPECIMEN_KINDS))
        _require(self.branches >= 1, "simulate.branches", "must be >= 1")
        _require(self.growth >= 0, "simulate.growth", "must be >= 0 Å per frame")
        _require(self.radius_min > 0, "simulate.radius_min", "must be > 0 Å")
        _require(self.radius_max >= self.radius_min, "simulate.radius_max",
                 "must be >= simulate.radius_min")
        _require(self.initial_length >= 0, "simulate.initial_length", "must be >= 0 Å")
        _require(self.thickness > 0, "simulate.thickness", "must be > 0 Å")
        _require(self.depth_low >= 0, "simulate.depth_low", "must be >= 0 Å (the exit plane)")
        _require(self.depth_high > self.depth_low, "simulate.depth_high",
                 "must be > simulate.depth_low")
        _require(self.drift >= 0, "simulate.drift", "must be >= 0 Å per frame")
        _require(self.jitter >= 0, "simulate.jitter", "must be >= 0 Å")


@dataclass(frozen=True)
class Popout:
    patch: int = 64  # px, edge of the square patches whose Thon rings are fitted
    step: int = 16  # px, stride between patches (patch / step patches overlap each pixel per axis)
    k_low: float = 0.04  # Å^-1, low edge of the fitted spatial-frequency band
    k_high: float = 0.30  # Å^-1, high edge of the band (clipped to 2/3 Nyquist and the aperture)
    defocus_step: float = 10.0  # Å, grid-search step of the effective defocus (then refined)
    search_margin: float = 200.0  # Å, heights searched reach this far beyond the cell (0..depth)
    min_rings: float = 1.5  # Thon rings (zeros of the CTF) in the band below which depth is unknown
    tolerance: float = 40.0  # Å, a patch's depth uncertainty at which its confidence is 0.5
    min_confidence: float = 0.2  # patches below this are filled from their neighbours
    resolution: float = 2.5  # Å, Gaussian sigma of the thickness map's low-pass
    min_thickness: float = 15.0  # Å, thinner material is taken for solvent (segmentation)
    min_area: float = 400.0  # Å², smaller material specks are dropped as noise
    rows_per_task: int = 4  # patch rows fitted per dask task (fixed, so results are deterministic)
    threads: int = 0  # threads of the default threaded scheduler (0 = one per core)

    def check(self) -> None:
        _require(self.patch >= 16, "popout.patch", "must be >= 16 px")
        _require(1 <= self.step <= self.patch, "popout.step", "must be between 1 and popout.patch px")
        _require(self.k_low > 0, "popout.k_low", "must be > 0 Å^-1")
        _require(self.k_high > self.k_low, "popout.k_high", "must be > popout.k_low")
        _require(self.defocus_step > 0, "popout.defocus_step", "must be > 0 Å")
        _require(self.search_margin >= 0, "popout.search_margin", "must be >= 0 Å")
        _require(self.min_rings >= 0, "popout.min_rings", "must be >= 0")
        _require(self.tolerance > 0, "popout.tolerance", "must be > 0 Å")
        _require(0 <= self.min_confidence < 1, "popout.min_confidence", "must be in [0, 1)")
        _require(self.resolution > 0, "popout.resolution", "must be > 0 Å")
        _require(self.min_thickness > 0, "popout.min_thickness", "must be > 0 Å")
        _require(self.min_area >= 0, "popout.min_area", "must be >= 0 Å²")
        _require(self.rows_per_task >= 1, "popout.rows_per_task", "must be >= 1")
        _require(self.threads >= 0, "popout.threads", "must be >= 0 (0 = one per core)")


@dataclass(frozen=True)
class Config:
    microscope: Microscope = field(default_factory=Microscope)
    sample: Sample = field(default_factory=Sample)
    detector: Detector = field(default_factory=Detector)
    refine: Refine = field(default_factory=Refine)
    stream: Stream = field(default_factory=Stream)
    simulate: Simulate = field(default_factory=Simulate)
    popout: Popout = field(default_factory=Popout)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (TOML/JSON-serialisable: arrays as lists), e.g. for the run
        store's attributes."""
        return {section: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
                for section, values in dataclasses.asdict(self).items()}

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with ``values`` changed in ``section`` (validated like a loaded file)."""
        data = self.to_dict()
        data[section].update(values)
        return from_dict(data)


def _check_roi(roi: tuple[int, ...], bin_: int) -> None:
    """``stream.roi``: () or y0 < y1, x0 < x1, >= 0, height and width multiples of ``bin_``
    (whether it lies inside the frame is checked once the frame's shape is known)."""
    if not roi:
        return
    _require(len(roi) == 4, "stream.roi", f"must be [] (whole frame) or [y0, x0, y1, x1] px, "
             f"got {list(roi)}")
    y0, x0, y1, x1 = roi
    _require(min(roi) >= 0, "stream.roi", f"{list(roi)} must have no negative pixel index")
    _require(y1 > y0 and x1 > x0, "stream.roi",
             f"{list(roi)} is empty: it needs y0 < y1 and x0 < x1 px (y1, x1 exclusive)")
    h, w = y1 - y0, x1 - x0
    fit = [y0, x0, y0 + max(h - h % bin_, bin_), x0 + max(w - w % bin_, bin_)]
    _require(h % bin_ == 0 and w % bin_ == 0, "stream.roi",
             f"{list(roi)} is {h} x {w} px, not a multiple of stream.bin = {bin_} px: "
             f"e.g. {fit}")


def _plausible(value: float, low: float, high: float, key: str, unit: str, example: str
               ) -> None:
    """:class:`ConfigError` naming ``key`` when ``value`` lies outside the physically sensible
    range [low, high] (in ``unit``): a typo such as 1e30 Å of defocus must be refused here,
    in one line naming the key, not fail later in whatever computation it derails."""
    _require(low <= value <= high, key, f"= {value:g} {unit} is not physically sensible: "
             f"expected {low:g} to {high:g} {unit} (e.g. {example})")


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key} {message}")


def _section_types() -> dict[str, type]:
    return typing.get_type_hints(Config)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    kind = annotation
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        if isinstance(value, str) and str in options:
            return value
        kind = next(o for o in options if o is not type(None))
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be finite, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if typing.get_origin(kind) is tuple and typing.get_args(kind)[0] is Membrane:
        return _membranes(key, value)
    if typing.get_origin(kind) is tuple:  # tuple[int, ...]: a TOML array of integers
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key} must be an array of integers, got {value!r}")
        return tuple(value)
    return value


def _membranes(key: str, value: Any) -> tuple[Membrane, ...]:
    """``sample.membranes``: a TOML array of inline tables -> Membranes (keys checked)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{key} must be an array of tables, e.g. "
                          '[{material = "carbon", height = 50.0, thickness = 100.0}], '
                          f"got {value!r}")
    known = typing.get_type_hints(Membrane)
    out = []
    for i, table in enumerate(value):
        for name in ("height", "thickness"):
            if name not in table:
                raise ConfigError(f"{key}[{i}] needs {name} (Å)")
        kwargs = {}
        for name, item in table.items():
            if name not in known:
                raise ConfigError(f"unknown key {key}[{i}].{name} (known: {', '.join(known)})")
            kwargs[name] = _coerce(f"{key}[{i}].{name}", item, known[name])
        out.append(Membrane(**kwargs))
    return tuple(out)


def from_dict(data: Mapping[str, Any]) -> Config:
    """Validate a nested mapping {section: {key: value}} into a :class:`Config`."""
    sections = _section_types()
    built = {}
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(sections)})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"[{name}] must be a table of keys")
    for name, cls in sections.items():
        values = dict(data.get(name, {}))
        known = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"unknown key {name}.{key} (known: {', '.join(known)})")
            kwargs[key] = _coerce(f"{name}.{key}", value, known[key])
        section = cls(**kwargs)
        section.check()
        built[name] = section
    return Config(**built)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; the value is read as a TOML literal, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like section.key=value")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: the key must be section.key")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts[0], parts[1], value


def load(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a TOML file (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {reason(exc)}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for text in overrides:
        section, key, value = parse_override(text)
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table of keys")
        table[key] = value
    return from_dict(data)


def to_toml(config: Config) -> str:
    """The config as TOML text (what a run used, so it can be run again)."""
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, bool):
                literal = "true" if value else "false"
            elif isinstance(value, str):
                literal = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            elif isinstance(value, (list, tuple)):
                literal = "[" + ", ".join(_toml_item(v) for v in value) + "]"
            else:
                literal = repr(value)
            lines.append(f"{key} = {literal}")
        lines.append("")
    return "\n".join(lines)


def _toml_item(value: Any) -> str:
    """An array item as TOML: a table (a membrane) inline, None entries left out."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_item(v)}" for k, v in value.items()
                               if v is not None) + "}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
