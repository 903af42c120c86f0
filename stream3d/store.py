"""The run store: a Zarr v3 group holding a movie's raw frames and its 4D (t, z, y, x) volumes.

This module is the only code that writes a run store (DESIGN.md "Run store"). Layout::

    OUT.zarr/
      frames     (t, y, x)     raw frames exactly as received (dtype kept)
      popout     (t, z, y, x)  float32 pop-out volume (V); NaN where not computed
      volume     (t, z, y, x)  float32 refined volume (V); NaN where not reconstructed
      frame_id   (t,) int64    detector frame number (-1 = fill, never committed)
      timestamp  (t,) float64  seconds
      status     (t,) uint8    0 pending, 1 refined, 2 skipped, 3 failed
      loss       (t,) float32  final data loss
      masked     (t,) int32    pixels kept out of compute (detector mask, NODATA); -1 = not known
      attributes: ome (OME-NGFF 0.5 multiscales of ``volume``) and
                  stream3d = {version, config, counters, frames, frame_interval, series}

How a killed run stays consistent (every chunk and metadata file is written atomically by
zarr's LocalStore: temporary file, then rename):

* Appending frames: resize every array to the new length, write the raw frames and timestamps,
  then ``frame_id`` last; ``frame_id`` is the commit mark. Only then are the attributes
  (counters) rewritten. On reopening, the store is cut back to the longest prefix whose
  ``frame_id`` is committed, so a frame is either fully there or not there at all.
* Results: ``popout``, ``volume`` and ``loss`` chunks of frame t, then ``status[t]``; a frame
  whose status is still 0 (pending) is simply reconstructed again when the run resumes.
* Consolidated metadata is written only by :meth:`RunStore.close` and removed when a store is
  reopened for writing, so a reader never sees a stale consolidated view of a growing store.
"""

from __future__ import annotations

import enum
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from stream3d import __version__
from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.ome import multiscales

COUNTERS = ("received", "malformed", "gaps", "duplicates", "skipped", "failed")
TABLE = ("frame_id", "timestamp", "status", "loss")
ARRAYS = ("frames", "popout", "volume", *TABLE)
# Per-frame arrays a store may lack (made by an older version): absent ones are not written.
OPTIONAL = ("masked",)
# Sections whose values change what the stored frames and volumes mean: resuming a store with
# a config that differs in these is refused (other sections, e.g. [refine], may change).
_PHYSICAL_SECTIONS = ("microscope", "sample", "detector")
# Raw frames arrive fast: lz4 + bit-shuffle compresses detector counts well at ~GB/s.
_RAW_CODECS = (BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle"),)


class Status(enum.IntEnum):
    """Per-frame reconstruction state, stored in ``status`` (uint8)."""

    PENDING = 0
    REFINED = 1
    SKIPPED = 2
    FAILED = 3


@dataclass(frozen=True)
class RawFrame:
    """One frame as received: detector series and frame number, timestamp (s), raw pixels (y, x)."""

    series: Any
    frame_id: int
    timestamp: float
    data: np.ndarray
    masked: int = -1  # pixels kept out of compute (detector mask, NODATA); -1 = not known


class _ChunkFiles:
    """Whole-chunk writes straight to the chunk files of a local Zarr v3 array.

    Appending at detector rates, zarr's general write path costs about three times the
    compression and the file write themselves per chunk. A t = 1 chunk is a whole file, named
    by the v3 spec's default chunk-key encoding (``c.t.0.0`` here) and encoded by the array's own
    codec chain (``bytes`` little-endian, then ``blosc`` or nothing), so this writes exactly the
    bytes zarr would. :meth:`supports` says whether an array's metadata is of that form (zarr's
    own path is used otherwise). Each file is replaced atomically, like zarr's LocalStore.
    """

    def __init__(self, root: Path, array: zarr.Array) -> None:
        self.dir = root / array.path
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.sep = array.metadata.chunk_key_encoding.to_dict().get("configuration", {}).get(
            "separator", "/")
        self.zeros = f"{self.sep}0" * (array.ndim - 1)
        blosc = [c for c in array.metadata.codecs if c.to_dict()["name"] == "blosc"]
        self.blosc = _numcodecs_blosc(blosc[0].to_dict()["configuration"]) if blosc else None
        self._made: set[Path] = set()

    @staticmethod
    def supports(array: zarr.Array) -> bool:
        meta = array.metadata
        if getattr(meta, "zarr_format", None) != 3 or meta.chunks[0] != 1 \
                or tuple(meta.chunks[1:]) != tuple(array.shape[1:]):
            return False
        enc = meta.chunk_key_encoding.to_dict()
        if enc.get("name") != "default":
            return False
        names = [c.to_dict() for c in meta.codecs]
        if not names or names[0]["name"] != "bytes" or \
                names[0].get("configuration", {}).get("endian", "little") != "little":
            return False
        return [n["name"] for n in names[1:]] in ([], ["blosc"])

    def write(self, t: int, chunk: np.ndarray) -> None:
        data = np.ascontiguousarray(chunk, dtype=self.dtype)
        payload = self.blosc.encode(data) if self.blosc is not None else data.tobytes()
        path = self.dir / f"c{self.sep}{t}{self.zeros}"
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)


def _numcodecs_blosc(config: Mapping[str, Any]):
    from numcodecs import Blosc

    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
               "bitshuffle": Blosc.BITSHUFFLE}[config.get("shuffle", "noshuffle")]
    return Blosc(cname=config["cname"], clevel=int(config["clevel"]), shuffle=shuffle,
                 blocksize=int(config.get("blocksize", 0)))


class RunStore:
    """The single writer of a run store; not thread-safe (one thread owns it, see stream.writer).

    Use :meth:`open` to create a new store or reopen (resume) an existing one.
    """

    def __init__(self, group: zarr.Group, path: Path, config: Config, state: dict[str, Any]) -> None:
        self._group = group
        self.path = path
        self.config = config
        self.counters: dict[str, int] = {k: int(state["counters"].get(k, 0)) for k in COUNTERS}
        self.series: list[dict[str, Any]] = list(state.get("series", []))
        self._arrays: dict[str, zarr.Array] = {}
        self._fast: dict[str, _ChunkFiles] = {}  # direct chunk writers of the append path
        self._fast_masked: _ChunkFiles | None = None
        self._frame_id = np.zeros(0, np.int64)
        self._timestamp = np.zeros(0, np.float64)
        self._status = np.zeros(0, np.uint8)
        self.frame_shape: tuple[int, int] | None = None
        self.frame_dtype: np.dtype | None = None
        self._closed = False

    # ----------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path, config: Config) -> RunStore:
        """Create the store at ``path``, or reopen it to resume (cutting back a torn append).

        Raises :class:`UserError` when ``path`` holds something that is not a stream3d run, or a
        run made with different optics or sampling than ``config``.
        """
        path = Path(path)
        if path.exists() and not (path / "zarr.json").exists():
            if path.is_file() or any(path.iterdir()):
                raise UserError(f"--out {path} exists and is not a Zarr run store")
        if (path / "zarr.json").exists():
            try:
                group = zarr.open_group(path, mode="r+", use_consolidated=False)
            except Exception as exc:  # zarr raises many kinds on a damaged group
                raise UserError(f"--out {path} cannot be opened as a Zarr group: {exc}") from None
            state = group.attrs.get("stream3d")
            if not isinstance(state, Mapping) or "counters" not in state:
                raise UserError(f"--out {path} is a Zarr group but not a stream3d run store")
            _check_same_physics(path, state.get("config", {}), config)
            store = cls(group, path, config, dict(state))
            store._recover()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            group = zarr.open_group(path, mode="w")
            store = cls(group, path, config, {"counters": {}})
        store._write_attrs()
        return store

    def _recover(self) -> None:
        """Load the per-frame table and cut every array back to the committed prefix."""
        _remove_partial_files(self.path)
        names = [n for n in ARRAYS if n in self._group.array_keys()]
        if not names:
            return
        lengths = [self._group[n].shape[0] for n in names]
        if len(names) < len(ARRAYS):
            if max(lengths) > 0:
                raise UserError(f"run store {self.path} is damaged: arrays "
                                f"{sorted(set(ARRAYS) - set(names))} are missing")
            for n in names:  # killed while creating the arrays, before any frame
                del self._group[n]
            return
        self._arrays = {n: self._group[n] for n in ARRAYS}
        self._arrays.update({n: self._group[n] for n in OPTIONAL if n in self._group.array_keys()})
        self._use_fast_path()
        frame_id = np.asarray(self._arrays["frame_id"][: min(lengths)], dtype=np.int64)
        uncommitted = np.flatnonzero(frame_id < 0)
        n = int(uncommitted[0]) if uncommitted.size else frame_id.size
        if any(a.shape[0] != n for a in self._arrays.values()):
            for a in self._arrays.values():
                a.resize((n, *a.shape[1:]))
        self._frame_id = frame_id[:n].copy()
        self._timestamp = np.asarray(self._arrays["timestamp"][:n], dtype=np.float64)
        self._status = np.asarray(self._arrays["status"][:n], dtype=np.uint8)
        frames = self._arrays["frames"]
        self.frame_shape = tuple(int(s) for s in frames.shape[1:])
        self.frame_dtype = native_dtype(frames.dtype)
        self.series = [s for s in self.series if int(s["first"]) <= n]

    def _create_arrays(self, shape: tuple[int, int], dtype: np.dtype) -> None:
        nz = self.config.sample.slices
        ny, nx = shape
        g = self._group
        specs = {
            "frames": dict(shape=(0, ny, nx), chunks=(1, ny, nx), dtype=dtype, fill_value=0,
                           compressors=_RAW_CODECS),
            "popout": dict(shape=(0, nz, ny, nx), chunks=(1, nz, ny, nx), dtype="float32",
                           fill_value=np.nan),
            "volume": dict(shape=(0, nz, ny, nx), chunks=(1, nz, ny, nx), dtype="float32",
                           fill_value=np.nan),
            "frame_id": dict(shape=(0,), chunks=(1,), dtype="int64", fill_value=-1,
                           compressors=None),
            "timestamp": dict(shape=(0,), chunks=(1,), dtype="float64", fill_value=np.nan,
                           compressors=None),
            "status": dict(shape=(0,), chunks=(1,), dtype="uint8", fill_value=int(Status.PENDING),
                           compressors=None),
            "loss": dict(shape=(0,), chunks=(1,), dtype="float32", fill_value=np.nan,
                           compressors=None),
            "masked": dict(shape=(0,), chunks=(1,), dtype="int32", fill_value=-1,
                           compressors=None),
        }
        dims = {"frames": ["t", "y", "x"], "popout": ["t", "z", "y", "x"],
                "volume": ["t", "z", "y", "x"]}
        # Chunk keys c.t.0.0: one flat folder per array, no folder to create per frame.
        keys = {"name": "default", "separator": "."}
        self._arrays = {name: g.create_array(name, dimension_names=dims.get(name, ["t"]),
                                             chunk_key_encoding=keys, **spec)
                        for name, spec in specs.items()}
        self._use_fast_path()
        self.frame_shape = (int(ny), int(nx))
        self.frame_dtype = np.dtype(dtype)

    def _use_fast_path(self) -> None:
        names = ("frames", "timestamp", "frame_id")
        if all(_ChunkFiles.supports(self._arrays[n]) for n in names):
            self._fast = {n: _ChunkFiles(self.path, self._arrays[n]) for n in names}
        if self._fast and "masked" in self._arrays and \
                _ChunkFiles.supports(self._arrays["masked"]):
            self._fast_masked = _ChunkFiles(self.path, self._arrays["masked"])

    # ----------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return int(self._frame_id.size)

    @property
    def frame_ids(self) -> np.ndarray:
        """Committed detector frame numbers, in store order (a read-only view)."""
        v = self._frame_id.view()
        v.flags.writeable = False
        return v

    @property
    def statuses(self) -> np.ndarray:
        """Per-frame :class:`Status` codes, in store order (a read-only view)."""
        v = self._status.view()
        v.flags.writeable = False
        return v

    def indices(self, *statuses: Status) -> np.ndarray:
        """Store indices t whose status is one of ``statuses``, ascending."""
        return np.flatnonzero(np.isin(self._status, [int(s) for s in statuses]))

    def seen(self) -> dict[Any, set[int]]:
        """Frame numbers already persisted, per series (what a resumed ingest must not repeat)."""
        out: dict[Any, set[int]] = {}
        bounds = [int(s["first"]) for s in self.series] + [len(self)]
        for seg, lo, hi in zip(self.series, bounds[:-1], bounds[1:]):
            out.setdefault(_series_key(seg["series"]), set()).update(self._frame_id[lo:hi].tolist())
        return out

    def current_series(self) -> Any:
        """The series of the last segment (None before any)."""
        return self.series[-1]["series"] if self.series else None

    def read_frame(self, t: int) -> np.ndarray:
        """Raw frame t (y, x) in its stored dtype."""
        return np.asarray(self._arrays["frames"][t])

    # ----------------------------------------------------------------------------- writing
    def begin_series(self, series: Any, meta: Mapping[str, Any] | None = None) -> None:
        """Record a series start at the current end of the store (its optics ``meta`` kept)."""
        segment = {"series": series, "first": len(self), "meta": dict(meta or {})}
        if self.series and int(self.series[-1]["first"]) == len(self):
            self.series[-1] = segment  # the previous start got no frames: replace it
        else:
            self.series.append(segment)
        self._write_attrs()

    def append(self, frames: Sequence[RawFrame], counters: Mapping[str, int] | None = None) -> range:
        """Persist raw frames (status pending) and then ``counters``; returns their indices t.

        All frames must have the run's shape and dtype (the first frame of a new store sets them).
        """
        if not frames:
            return range(len(self), len(self))
        first = frames[0].data
        if not self._arrays:
            self._create_arrays(first.shape, native_dtype(first.dtype))
        for f in frames:
            if f.data.shape != self.frame_shape or native_dtype(f.data.dtype) != self.frame_dtype:
                raise ValueError(f"frame {f.frame_id} is {f.data.dtype} {f.data.shape}; this run "
                                 f"stores {self.frame_dtype} {self.frame_shape}")
        for i, f in enumerate(frames):
            if not self.series or _series_key(f.series) != _series_key(self.current_series()):
                self._note_segment(f.series, len(self) + i)
        t0, t1 = len(self), len(self) + len(frames)
        for a in self._arrays.values():
            a.resize((t1, *a.shape[1:]))
        ts = np.array([f.timestamp for f in frames], dtype=np.float64)
        ids = np.array([f.frame_id for f in frames], dtype=np.int64)
        masked = np.array([f.masked for f in frames], dtype=np.int32)
        write_masked = "masked" in self._arrays and bool((masked >= 0).any())
        if self._fast:
            for i, f in enumerate(frames):
                self._fast["frames"].write(t0 + i, f.data[None])
                self._fast["timestamp"].write(t0 + i, ts[i:i + 1])
                if write_masked and self._fast_masked is not None:
                    self._fast_masked.write(t0 + i, masked[i:i + 1])
            if write_masked and self._fast_masked is None:
                self._arrays["masked"][t0:t1] = masked
            for i in range(len(frames)):
                self._fast["frame_id"].write(t0 + i, ids[i:i + 1])  # the commit mark: last
        else:
            block = np.empty((len(frames), *self.frame_shape), self.frame_dtype)
            for i, f in enumerate(frames):
                block[i] = f.data  # one copy, byte order made native on the way
            self._arrays["frames"][t0:t1] = block
            self._arrays["timestamp"][t0:t1] = ts
            if write_masked:
                self._arrays["masked"][t0:t1] = masked
            self._arrays["frame_id"][t0:t1] = ids  # the commit mark: written last
        self._frame_id = np.concatenate([self._frame_id, ids])
        self._timestamp = np.concatenate([self._timestamp, ts])
        self._status = np.concatenate([self._status, np.zeros(len(frames), np.uint8)])
        if counters is not None:
            self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()
        return range(t0, t1)

    def _note_segment(self, series: Any, first: int) -> None:
        if self.series and int(self.series[-1]["first"]) == first:
            self.series[-1]["series"] = series
        else:
            self.series.append({"series": series, "first": first, "meta": {}})

    def write_result(self, t: int, *, status: Status, popout: np.ndarray | None = None,
                     volume: np.ndarray | None = None, loss: float = math.nan,
                     counters: Mapping[str, int] | None = None) -> None:
        """Write frame t's volumes and loss, then its status, then ``counters``."""
        if not 0 <= t < len(self):
            raise IndexError(f"frame index {t} is outside the store (0..{len(self) - 1})")
        shape = (self.config.sample.slices, *self.frame_shape)
        for name, vol in (("popout", popout), ("volume", volume)):
            if vol is not None:
                vol = np.asarray(vol, dtype=np.float32)
                if vol.shape != shape:
                    raise ValueError(f"{name} of frame {t} has shape {vol.shape}, expected {shape}")
                self._arrays[name][t] = vol
        self._arrays["loss"][t] = np.float32(loss)
        self._arrays["status"][t] = np.uint8(status)
        self._status[t] = np.uint8(status)
        if counters is not None:
            self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()

    def mark(self, ts: Sequence[int], status: Status,
             counters: Mapping[str, int] | None = None) -> None:
        """Set the status of frames ``ts`` (e.g. skipped by the ``latest`` policy)."""
        for t in ts:
            self._arrays["status"][int(t)] = np.uint8(status)
            self._status[int(t)] = np.uint8(status)
        if counters is not None:
            self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()

    def set_counters(self, counters: Mapping[str, int]) -> None:
        self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()

    def frame_interval(self) -> float:
        """Seconds between frames: measured from the latest series' timestamps and frame
        numbers when it has two or more frames, else ``stream.frame_interval`` from the config."""
        if self.series and len(self) > 1:
            lo = int(self.series[-1]["first"])
            ids, ts = self._frame_id[lo:], self._timestamp[lo:]
            if ids.size > 1 and ids[-1] != ids[0]:
                dt = float((ts[-1] - ts[0]) / (ids[-1] - ids[0]))
                if math.isfinite(dt) and dt > 0:
                    return dt
        return float(self.config.stream.frame_interval)

    def _write_attrs(self) -> None:
        s = self.config.sample
        self._group.attrs.update({
            "ome": multiscales("volume", frame_interval=self.frame_interval(),
                               slice_thickness=s.slice_thickness, pixel_size=s.pixel_size),
            "stream3d": {
                "version": __version__,
                "config": self.config.to_dict(),
                "counters": dict(self.counters),
                "frames": len(self),
                "frame_interval": self.frame_interval(),
                "series": [_jsonable(seg) for seg in self.series],
            },
        })

    def close(self) -> None:
        """Final attributes, then the consolidated metadata (once, at the end of a run)."""
        if self._closed:
            return
        self._write_attrs()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "consolidated metadata is not in the v3 spec"
            zarr.consolidate_metadata(self.path)
        self._closed = True


def native_dtype(dtype: np.dtype | str) -> np.dtype:
    """``dtype`` in this machine's byte order: values are kept, only the byte order may change
    (a big-endian detector's '>u2' frames are stored as uint16)."""
    return np.dtype(dtype).newbyteorder("=")


def open_run(path: str | Path) -> zarr.Group:
    """Open a run store read-only (raises :class:`UserError` when it is not one)."""
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise UserError(f"{path} is not a Zarr run store (no zarr.json)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = zarr.open_group(path, mode="r")
    if "stream3d" not in group.attrs:
        raise UserError(f"{path} is a Zarr group but not a stream3d run store")
    return group


def _check_same_physics(path: Path, stored: Mapping[str, Any], config: Config) -> None:
    now = config.to_dict()
    for section in _PHYSICAL_SECTIONS:
        for key, value in now[section].items():
            old = stored.get(section, {}).get(key, value)
            if old != value:
                raise UserError(
                    f"--out {path} was recorded with {section}.{key}={old!r}, the config says "
                    f"{value!r}: use the same {section}.{key} to resume, or a new --out")


def _remove_partial_files(path: Path) -> None:
    """Temporary files of atomic writes cut short by a kill (zarr names them *.partial)."""
    for p in path.rglob("*.partial"):
        p.unlink(missing_ok=True)


def _series_key(series: Any) -> Any:
    """A hashable key for a series id (JSON may deliver lists or dicts)."""
    if isinstance(series, (list, dict)):
        import json

        return json.dumps(series, sort_keys=True)
    return series


def _jsonable(segment: Mapping[str, Any]) -> dict[str, Any]:
    return {"series": segment["series"], "first": int(segment["first"]),
            "meta": dict(segment.get("meta") or {})}
