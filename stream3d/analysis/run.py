"""Read a run store (docs/architecture.md layout) as lazy dask arrays with physical coordinates.

A run store is a Zarr v3 group with (t, z, y, x) ``volume`` / ``popout``, (t, y, x) ``frames``
and per-frame ``frame_id``, ``timestamp``, ``status``, ``loss``; the OME-NGFF ``ome`` attribute
gives the scale and ``stream3d`` the config and counters. A ground-truth store from the
simulation (``occupancy`` / ``potential``, maybe without per-frame tables) reads the same way.
A store still being written is read as it stands when opened: arrays are cut to the frames
that every one of them already holds, and only frames whose status says so count as done.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream3d import config as config_mod
from stream3d.errors import UserError
from stream3d.store import Status

STATUS_NAMES = {int(s): s.name.lower() for s in Status}  # the store's codes, by name
# Units and meanings of the xarray variables (CF conventions: flag_values / flag_meanings map
# a status code to its name).
VARIABLE_ATTRS = {
    "volume": {"units": "V", "long_name": "refined electrostatic potential (material - solvent)"},
    "popout": {"units": "V", "long_name": "pop-out potential (material - solvent)"},
    "potential": {"units": "V", "long_name": "true potential (material - solvent)"},
    "occupancy": {"units": "1", "long_name": "true material fraction of each voxel"},
    "frames": {"units": "counts", "long_name": "raw detector frames as received"},
    "frame_id": {"units": "1", "long_name": "detector frame number"},
    "timestamp": {"units": "s", "long_name": "detector timestamp"},
    "loss": {"units": "1", "long_name": "final data loss of the refinement"},
    "status": {"units": "1", "long_name": "frame status",
               "flag_values": list(STATUS_NAMES), "flag_meanings": " ".join(STATUS_NAMES.values())},
}
REFINED = int(Status.REFINED)
# What to analyse, first present wins. A truth store's occupancy is the material itself; its
# potential carries the amorphous texture, which would speckle a threshold at half the level.
VOLUME_NAMES = ("volume", "occupancy", "potential")
PER_FRAME = ("frame_id", "timestamp", "status", "loss")
LAYOUT = ("frames", "popout", *VOLUME_NAMES, *PER_FRAME)  # arrays along t in docs/architecture.md / truth


@dataclass(frozen=True)
class Run:
    """A run store opened read-only: every (t, ...) array as a lazy dask array, plus coordinates.

    Lengths are Å and times are seconds, as stored. ``name`` is the (t, z, y, x) array taken as
    the volume. ``status`` is read from the store, or all "complete" for a ground-truth store.
    """

    path: Path
    name: str
    arrays: Mapping[str, Any]  # name -> dask array, all cut to the same t length
    dims: Mapping[str, tuple[str, ...]]  # name -> dimension names (t first)
    sampling: tuple[float, float, float]  # (dz, dy, dx) Å
    frame_interval: float  # s, from the OME scale (0 when unknown)
    time: np.ndarray  # (t,) s since the first frame
    frame_id: np.ndarray  # (t,) int64
    status: np.ndarray  # (t,) uint8; REFINED where the volume is final
    status_names: tuple[str, ...]  # (t,) text of each status
    loss: np.ndarray  # (t,) float, NaN where absent
    config: dict[str, Any] = field(default_factory=dict)  # the run's config, nested sections
    counters: dict[str, Any] = field(default_factory=dict)  # received, malformed, gaps, ...
    version: str = ""  # stream3d version that wrote the store
    attrs: dict[str, Any] = field(default_factory=dict)  # every group attribute, as stored
    # (y, x) Å of the volume's corner in the whole raw frame: the ROI offset (stream.roi)
    origin: tuple[float, float] = (0.0, 0.0)
    # (t, 2) Å, the specimen's drift (y, x) in each frame against the first (the store's
    # ``shift``; a truth store's applied shift); zeros where not measured
    shift: np.ndarray | None = None

    @property
    def volume(self) -> Any:
        """The analysed (t, z, y, x) dask array."""
        return self.arrays[self.name]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(n) for n in self.volume.shape)

    @property
    def done(self) -> np.ndarray:
        """(t,) bool: frames whose volume is final (refined, or every frame of a truth store)."""
        return self.status == REFINED

    def coords(self) -> dict[str, np.ndarray]:
        """Coordinates (voxel centres): t (s), z depth below the entrance plane (Å), height
        above the exit plane (Å, along z), y and x (Å, in the whole raw frame: a run over a
        region of interest starts at its offset)."""
        nt, nz, ny, nx = self.shape
        dz, dy, dx = self.sampling
        return {
            "t": self.time,
            "z": (np.arange(nz) + 0.5) * dz,
            "height": (nz - np.arange(nz) - 0.5) * dz,
            "y": self.origin[0] + (np.arange(ny) + 0.5) * dy,
            "x": self.origin[1] + (np.arange(nx) + 0.5) * dx,
        }

    def frame(self, t: int) -> np.ndarray:
        """The volume of frame ``t`` as a numpy array (z, y, x)."""
        return np.asarray(self.volume[t].compute())

    def specimen_frame(self, t: int) -> tuple[np.ndarray, tuple[float, float]]:
        """Frame ``t``'s volume in specimen coordinates: moved back by its drift (``shift``)
        in whole pixels, what enters at the edges empty (0 V, solvent); and the drift left
        below a pixel (dy, dx) Å, to subtract from positions measured in it (the
        ``origin`` of :func:`stream3d.analysis.objects.frame_objects`). Growth and tip motion
        measured this way are the specimen's, not the stage's."""
        from stream3d.register import moved

        volume = self.frame(t)
        if self.shift is None:
            return volume, (0.0, 0.0)
        _, dy, dx = self.sampling
        sy, sx = (float(v) if np.isfinite(v) else 0.0 for v in self.shift[t])
        step = (int(round(sy / dy)), int(round(sx / dx)))
        if any(step):
            volume = moved(volume, (-step[0], -step[1]), 0.0)
        return volume, (sy - step[0] * dy, sx - step[1] * dx)

    def to_xarray(self) -> Any:
        """An ``xarray.Dataset`` of the same lazy arrays (needs xarray installed)."""
        import xarray as xr

        c = self.coords()
        data = {name: (self.dims[name], a, dict(VARIABLE_ATTRS.get(name, {})))
                for name, a in self.arrays.items()}
        data.setdefault("status", (("t",), self.status, dict(VARIABLE_ATTRS["status"])))
        data.setdefault("frame_id", (("t",), self.frame_id, dict(VARIABLE_ATTRS["frame_id"])))
        ds = xr.Dataset(
            data,
            coords={"t": ("t", c["t"], {"units": "s"}), "z": ("z", c["z"], {"units": "Å"}),
                    "height": ("z", c["height"],
                               {"units": "Å", "long_name": "height above exit plane"}),
                    "y": ("y", c["y"], {"units": "Å"}), "x": ("x", c["x"], {"units": "Å"})},
            attrs={"path": str(self.path), "volume": self.name, "version": self.version,
                   "config": self.config, "counters": self.counters},
        )
        return ds


def open_run(path: str | Path) -> Any:
    """Open a run store for notebooks: an ``xarray.Dataset`` if xarray is installed, else a
    :class:`Run`. Arrays stay lazy (dask); coordinates are physical (s, Å)."""
    run = read_run(path)
    try:
        import xarray  # noqa: F401
    except ImportError:
        return run
    return run.to_xarray()


def read_run(path: str | Path, *, array: str | None = None) -> Run:
    """Open the store at ``path`` read-only as a :class:`Run` (raises UserError if it is not one).

    ``array`` picks the (t, z, y, x) array to analyse; default: the first present of
    volume, occupancy, potential.
    """
    import dask.array as da

    path = Path(path)
    group = _open_group(path)
    attrs = dict(group.attrs)
    zarrays = {name: group[name] for name in group.array_keys()}
    if not zarrays and "stream3d" in attrs:
        raise UserError(f"{path} is a run store that holds no frames yet")
    name = _volume_name(path, zarrays, array)
    # Layout arrays all run along t; a live writer resizes them all, then writes frame_id last
    # (the commit mark, -1 until written): read the committed prefix that every array holds.
    n = min(a.shape[0] for k, a in zarrays.items() if k in LAYOUT or k == name)
    if "frame_id" in zarrays:
        uncommitted = np.flatnonzero(np.asarray(zarrays["frame_id"][:n]) < 0)
        n = int(uncommitted[0]) if uncommitted.size else n
    arrays = {k: da.from_zarr(a)[:n] for k, a in zarrays.items()
              if a.ndim >= 1 and a.shape[0] >= n}
    meta = attrs.get("stream3d") or {}
    cfg = dict(meta.get("config") or {})
    sampling, interval = _scale(path, attrs, cfg)
    tables = {k: np.asarray(zarrays[k][:n]) for k in PER_FRAME if k in zarrays}
    status = tables.get("status", np.full(n, REFINED)).astype(np.uint8)
    names = tuple(STATUS_NAMES.get(int(s), f"status {int(s)}") if "status" in tables
                  else "complete" for s in status)
    return Run(
        path=path, name=name, arrays=arrays, dims={k: _dims(zarrays[k]) for k in arrays},
        sampling=sampling, frame_interval=interval,
        time=_times(tables.get("timestamp"), interval, n),
        frame_id=tables.get("frame_id", np.arange(n)).astype(np.int64),
        status=status, status_names=names,
        loss=tables.get("loss", np.full(n, np.nan)).astype(np.float64),
        config=cfg, counters=dict(meta.get("counters") or {}), version=str(meta.get("version", "")),
        attrs=attrs, origin=_origin(meta), shift=_shift(zarrays, n),
    )


def _shift(zarrays: Mapping[str, Any], n: int) -> np.ndarray | None:
    """(n, 2) Å of the store's ``shift`` array (NaN: 0), or None without one."""
    a = zarrays.get("shift")
    if a is None or a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < n:
        return None
    shift = np.asarray(a[:n], dtype=np.float64)
    return np.where(np.isfinite(shift), shift, 0.0)


def _origin(meta: Mapping[str, Any]) -> tuple[float, float]:
    """(y, x) Å of the ROI's corner recorded in ``stream3d.view`` (0, 0 without one)."""
    try:
        y, x = (float(v) for v in meta["view"]["origin"])
        return (y, x)
    except (KeyError, TypeError, ValueError):
        return (0.0, 0.0)


def _dims(a: Any) -> tuple[str, ...]:
    """Dimension names stored with a Zarr v3 array, else the layout's by rank."""
    names = getattr(a.metadata, "dimension_names", None)
    if names and len(names) == a.ndim and all(names):
        return tuple(str(n) for n in names)
    default = {1: ("t",), 3: ("t", "y", "x"), 4: ("t", "z", "y", "x")}
    return default.get(a.ndim, ("t", *(f"dim_{k}" for k in range(1, a.ndim))))


def _open_group(path: Path) -> Any:
    import zarr

    if not path.exists():
        raise UserError(f"{path} does not exist")
    try:
        # Not the consolidated view: it is written only when a run closes and would hide
        # frames a live run appended since.
        return zarr.open_group(path, mode="r", use_consolidated=False)
    except Exception as exc:  # zarr raises many kinds for "not a group"; all mean the same here
        raise UserError(f"{path} is not a Zarr run store ({type(exc).__name__}: {exc})") from None


def _volume_name(path: Path, arrays: Mapping[str, Any], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in arrays:
            have = ", ".join(sorted(arrays)) or "none"
            raise UserError(f"{path} has no array {wanted!r} (it has: {have})")
        name = wanted
    else:
        present = [n for n in VOLUME_NAMES if n in arrays]
        if not present:
            raise UserError(f"{path} is not a run store: no {' / '.join(VOLUME_NAMES)} array "
                            f"(it has: {', '.join(sorted(arrays)) or 'none'})")
        name = present[0]
    if arrays[name].ndim != 4:
        raise UserError(f"{path}: array {name!r} must be (t, z, y, x), got shape {arrays[name].shape}")
    return name


def _scale(path: Path, attrs: Mapping[str, Any], cfg: Mapping[str, Any]
           ) -> tuple[tuple[float, float, float], float]:
    """((dz, dy, dx) Å, frame interval s) from the OME scale, else from the config's sample."""
    from stream3d.ome import scale_of

    ome = attrs.get("ome")
    if ome:
        try:
            dt, dz, dy, dx = scale_of(ome)
            return (dz, dy, dx), dt
        except (KeyError, IndexError, TypeError, ValueError):
            raise UserError(f"{path}: the 'ome' attribute has no (t, z, y, x) scale") from None
    sample = cfg.get("sample") or {}
    if "slice_thickness" in sample and "pixel_size" in sample:
        px = float(sample["pixel_size"])
        return (float(sample["slice_thickness"]), px, px), 0.0
    raise UserError(f"{path}: no 'ome' scale and no sample config, so voxel sizes are unknown")


def _times(timestamp: np.ndarray | None, interval: float, n: int) -> np.ndarray:
    """Seconds since the first frame: from timestamps when they advance, else index x interval."""
    if timestamp is not None:
        ts = np.asarray(timestamp, dtype=np.float64)
        finite = np.isfinite(ts)
        if finite.any() and np.ptp(ts[finite]) > 0:
            return ts - ts[np.argmax(finite)]
    return np.arange(n) * float(interval if interval > 0 else 1.0)


def status_summary(names: Sequence[str]) -> str:
    """E.g. '8 refined, 2 skipped', in the order the statuses first appear."""
    return ", ".join(f"{n} {name}" for name, n in Counter(names).items())


def material_level(name: str, config: config_mod.Config) -> float:
    """The value of full material in array ``name``: 1 for an occupancy, else sample.potential V."""
    return 1.0 if name == "occupancy" else float(config.sample.potential)


def run_config(run: Run, path: str | Path | None = None,
               overrides: tuple[str, ...] = ()) -> config_mod.Config:
    """The run's config (keys this version knows), or the file at ``path``; then ``--set``.

    A store written by another stream3d version may carry keys unknown here; they are dropped
    rather than refused, since analysis needs only the sample section.
    """
    if path is not None:
        return config_mod.load(path, overrides)
    known = config_mod.Config().to_dict()
    data = {section: {k: v for k, v in (run.config.get(section) or {}).items() if k in keys}
            for section, keys in known.items()}
    for text in overrides:
        section, key, value = config_mod.parse_override(text)
        data.setdefault(section, {})[key] = value
    return config_mod.from_dict(data)
