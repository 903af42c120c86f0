"""RunStore: the single writer of a run store (create, append, results, counters, close)."""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from stream3d._version import __version__
from stream3d.config import Config
from stream3d.errors import UserError
from stream3d.ome import multiscales
from stream3d.store.chunks import _atomic_write, _ChunkFiles
from stream3d.store.recovery import (
    _check_same_physics, _remove_abandoned_creations, _remove_partial_files,
)
from stream3d.store.schema import (
    _RAW_CODECS, ARRAYS, COUNTERS, MAX_FRAME_ID, OPTIONAL, SEGMENTS, STORABLE_DTYPES, RawFrame,
    Status, _jsonable, _series_key, check_out_path, native_dtype, read_segments,
)
from stream3d.store_lock import StoreLock
from stream3d.view import View, view_for


class RunStore:
    """The single writer of a run store; not thread-safe (one thread owns it, see stream.writer).

    Use :meth:`open` to create a new store or reopen (resume) an existing one. The store holds
    its folder's writer lock until :meth:`close` or :meth:`release` (or the process ends).
    """

    def __init__(self, group: zarr.Group, path: Path, config: Config, state: dict[str, Any],
                 lock: StoreLock | None = None) -> None:
        self._group = group
        self.path = path
        self.config = config
        self._lock = lock
        self.counters: dict[str, int] = {k: int(state["counters"].get(k, 0)) for k in COUNTERS}
        # Segments as {series, first}; only the newest keeps its meta in memory.
        self.series: list[dict[str, Any]] = []
        self._arrays: dict[str, zarr.Array] = {}
        self._fast: dict[str, _ChunkFiles] = {}  # direct chunk writers of the append path
        self._n = 0  # committed frames
        self._status_counts = [0] * len(Status)
        # (frame id, timestamp) of the newest segment's first frame and of the last frame:
        # all the frame interval needs, so nothing per frame is kept in memory.
        self._seg_first: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None
        self._fast_masked: _ChunkFiles | None = None
        self.frame_shape: tuple[int, int] | None = None
        self.frame_dtype: np.dtype | None = None
        self.view: View | None = None  # the part of each frame the volumes cover
        self._closed = False

    # ----------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path, config: Config) -> RunStore:
        """Create the store at ``path``, or reopen it to resume (cutting back a torn append).

        Raises :class:`UserError` when ``path`` holds something that is not a stream3d run, a
        run made with different optics or sampling than ``config``, or a store that another
        process is writing.
        """
        path = Path(path)
        check_out_path(path)
        if not (path / "zarr.json").exists():
            store = cls._create(path, config)
            if store is not None:
                return store
        lock = StoreLock.acquire(path)
        try:
            try:
                group = zarr.open_group(path, mode="r+", use_consolidated=False)
            except Exception as exc:  # zarr raises many kinds on a damaged group
                raise UserError(f"--out {path} cannot be opened as a Zarr group: {exc}") from None
            state = group.attrs.get("stream3d")
            if not isinstance(state, Mapping) or "counters" not in state:
                raise UserError(f"--out {path} is a Zarr group but not a stream3d run store")
            _check_same_physics(path, state.get("config", {}), config,
                                has_volumes="volume" in group.array_keys())
            store = cls(group, path, config, dict(state), lock)
            store._recover(state)
            store._write_attrs()
        except BaseException:
            lock.release()
            raise
        return store

    @classmethod
    def _create(cls, path: Path, config: Config) -> RunStore | None:
        """A new store built in a hidden sibling and renamed into place (atomic: a kill leaves
        either no store or a complete empty one). None when another process created ``path``
        first (the caller then opens that one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_creations(path)
        tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        lock = StoreLock.acquire(tmp)
        try:
            group = zarr.open_group(tmp, mode="w-")  # "w" would delete the locked folder
            group.create_group(SEGMENTS)
            store = cls(group, tmp, config, {"counters": {}}, lock)
            store._write_attrs()
            try:
                os.rename(tmp, path)  # onto nothing or an empty folder only
            except OSError:
                if (path / "zarr.json").exists():
                    lock.release()
                    shutil.rmtree(tmp, ignore_errors=True)
                    return None
                raise
        except BaseException:
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        store.path = path
        store._group = zarr.open_group(path, mode="r+", use_consolidated=False)
        return store

    def _recover(self, state: Mapping[str, Any]) -> None:
        """Load the per-frame table and cut every array back to the committed prefix."""
        _remove_partial_files(self.path)
        names = [n for n in ARRAYS if n in self._group.array_keys()]
        segments = self._read_segments(state)
        if not names:
            self._set_segments(segments, 0)
            return
        lengths = [self._group[n].shape[0] for n in names]
        if len(names) < len(ARRAYS):
            if max(lengths) > 0:
                raise UserError(f"run store {self.path} is damaged: arrays "
                                f"{sorted(set(ARRAYS) - set(names))} are missing")
            for n in names:  # killed while creating the arrays, before any frame
                del self._group[n]
            self._set_segments(segments, 0)
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
        self._n = n
        status = np.asarray(self._arrays["status"][:n], dtype=np.uint8)
        self._status_counts = [int((status == s).sum()) for s in Status]
        frames = self._arrays["frames"]
        self.frame_shape = tuple(int(s) for s in frames.shape[1:])
        self.frame_dtype = native_dtype(frames.dtype)
        self.view = view_for(self.config, self.frame_shape)
        self._set_segments(segments, n)
        if n:
            ts = np.asarray(self._arrays["timestamp"][:n], dtype=np.float64)
            first = int(self.series[-1]["first"]) if self.series else 0
            if first < n:
                self._seg_first = (int(frame_id[first]), float(ts[first]))
            self._last = (int(frame_id[n - 1]), float(ts[n - 1]))

    def _read_segments(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        if SEGMENTS not in self._group.group_keys():
            self._group.create_group(SEGMENTS)
            return [dict(s) for s in state.get("series", [])]  # a store of an older version
        return read_segments(self._group)

    def _set_segments(self, segments: list[dict[str, Any]], n: int) -> None:
        """Keep the segments that start within the committed frames; drop the rest."""
        keep = [s for s in segments if int(s["first"]) <= n]
        folder = self.path / SEGMENTS
        for i in range(len(keep), len(segments)):
            shutil.rmtree(folder / str(i), ignore_errors=True)
        for p in folder.iterdir():  # a segment group killed before its zarr.json
            if p.is_dir() and not (p / "zarr.json").exists():
                shutil.rmtree(p, ignore_errors=True)
        on_disk = {int(p.name) for p in folder.iterdir() if p.name.isdigit()}
        for i, seg in enumerate(keep):
            if i not in on_disk:
                self._write_segment(i, seg)  # migrated from an older version's attributes
        self.series = [{"series": s["series"], "first": int(s["first"])} for s in keep]
        if keep:
            self.series[-1]["meta"] = dict(keep[-1].get("meta") or {})

    def _create_arrays(self, shape: tuple[int, int], dtype: np.dtype) -> None:
        nz = self.config.sample.slices
        ny, nx = shape
        view = view_for(self.config, shape)  # a ROI outside the frame: refused, nothing made
        vy, vx = view.shape
        g = self._group
        specs = {
            "frames": dict(shape=(0, ny, nx), chunks=(1, ny, nx), dtype=dtype, fill_value=0,
                           compressors=_RAW_CODECS),
            "popout": dict(shape=(0, nz, vy, vx), chunks=(1, nz, vy, vx), dtype="float32",
                           fill_value=np.nan),
            "volume": dict(shape=(0, nz, vy, vx), chunks=(1, nz, vy, vx), dtype="float32",
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
            "shift": dict(shape=(0, 2), chunks=(1, 2), dtype="float32", fill_value=np.nan,
                          compressors=None),
            "defocus": dict(shape=(0,), chunks=(1,), dtype="float32", fill_value=np.nan,
                            compressors=None),
        }
        dims = {"frames": ["t", "y", "x"], "popout": ["t", "z", "y", "x"],
                "volume": ["t", "z", "y", "x"], "shift": ["t", "yx"]}
        # Chunk keys c.t.0.0: one flat folder per array, no folder to create per frame.
        keys = {"name": "default", "separator": "."}
        self._arrays = {name: g.create_array(name, dimension_names=dims.get(name, ["t"]),
                                             chunk_key_encoding=keys, **spec)
                        for name, spec in specs.items()}
        self._use_fast_path()
        self.frame_shape = (int(ny), int(nx))
        self.frame_dtype = np.dtype(dtype)
        self.view = view

    def _use_fast_path(self) -> None:
        names = ("frames", "timestamp", "frame_id", "status")
        if all(_ChunkFiles.supports(self._arrays[n]) for n in names):
            self._fast = {n: _ChunkFiles(self.path, self._arrays[n]) for n in names}
        if self._fast and "masked" in self._arrays and \
                _ChunkFiles.supports(self._arrays["masked"]):
            self._fast_masked = _ChunkFiles(self.path, self._arrays["masked"])

    # ----------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return self._n

    @property
    def frame_ids(self) -> np.ndarray:
        """Committed detector frame numbers, in store order (read from the store)."""
        if not self._arrays:
            return np.zeros(0, np.int64)
        return np.asarray(self._arrays["frame_id"][: self._n], dtype=np.int64)

    @property
    def statuses(self) -> np.ndarray:
        """Per-frame :class:`Status` codes, in store order (read from the store)."""
        if not self._arrays:
            return np.zeros(0, np.uint8)
        return np.asarray(self._arrays["status"][: self._n], dtype=np.uint8)

    def status_counts(self) -> dict[Status, int]:
        """How many committed frames have each status (kept up to date, not read)."""
        return {s: self._status_counts[int(s)] for s in Status}

    def indices(self, *statuses: Status) -> np.ndarray:
        """Store indices t whose status is one of ``statuses``, ascending."""
        return np.flatnonzero(np.isin(self.statuses, [int(s) for s in statuses]))

    def seen(self) -> dict[Any, set[int]]:
        """Frame numbers already persisted, per series (what a resumed ingest must not repeat)."""
        out: dict[Any, set[int]] = {}
        ids = self.frame_ids
        bounds = [int(s["first"]) for s in self.series] + [len(self)]
        for seg, lo, hi in zip(self.series, bounds[:-1], bounds[1:]):
            out.setdefault(_series_key(seg["series"]), set()).update(ids[lo:hi].tolist())
        return out

    def current_series(self) -> Any:
        """The series of the last segment (None before any)."""
        return self.series[-1]["series"] if self.series else None

    @property
    def volume_shape(self) -> tuple[int, int, int] | None:
        """(z, y, x) of one frame's volume (the view's binned shape); None before any frame."""
        if self.view is None:
            return None
        return (self.config.sample.slices, *self.view.shape)

    def read_frame(self, t: int) -> np.ndarray:
        """Raw frame t (y, x) in its stored dtype."""
        return np.asarray(self._arrays["frames"][t])

    # ----------------------------------------------------------------------------- writing
    def begin_series(self, series: Any, meta: Mapping[str, Any] | None = None,
                     meta_dropped: int = 0) -> None:
        """Record a series start at the current end of the store (its optics ``meta`` kept,
        written once; ``meta_dropped``: how many meta entries the receiver refused)."""
        segment = {"series": series, "first": len(self), "meta": dict(meta or {})}
        if meta_dropped:
            segment["meta_dropped"] = int(meta_dropped)
        if self.series and int(self.series[-1]["first"]) == len(self):
            self.series[-1] = segment  # the previous start got no frames: replace it
        else:
            if self.series:
                self.series[-1].pop("meta", None)  # written already; only the newest is kept
            self.series.append(segment)
            self._seg_first = None
        self._write_segment(len(self.series) - 1, segment)

    def append(self, frames: Sequence[RawFrame], counters: Mapping[str, int] | None = None) -> range:
        """Persist raw frames (status pending) and then ``counters``; returns their indices t.

        All frames must have the run's shape and dtype (the first frame of a new store sets
        them), a dtype in :data:`STORABLE_DTYPES` and a frame number in 0..2^63-1; a frame that
        breaks these raises ValueError before anything is written.
        """
        if not frames:
            return range(len(self), len(self))
        first = frames[0].data
        for f in frames:
            if native_dtype(f.data.dtype) not in STORABLE_DTYPES:
                raise ValueError(f"frame {f.frame_id} is {f.data.dtype}: the store holds only "
                                 f"{', '.join(sorted(d.name for d in STORABLE_DTYPES))}")
            if not (isinstance(f.frame_id, (int, np.integer))
                    and 0 <= int(f.frame_id) <= MAX_FRAME_ID):
                raise ValueError(f"frame number {f.frame_id!r} is not an integer in 0..2^63-1")
            if self.frame_shape is not None and (
                    f.data.shape != self.frame_shape
                    or native_dtype(f.data.dtype) != self.frame_dtype):
                raise ValueError(f"frame {f.frame_id} is {f.data.dtype} {f.data.shape}; this run "
                                 f"stores {self.frame_dtype} {self.frame_shape}")
            if f.data.shape != first.shape or f.data.dtype != first.dtype:
                raise ValueError(f"frame {f.frame_id} is {f.data.dtype} {f.data.shape}, unlike "
                                 f"the first frame of its batch ({first.dtype} {first.shape})")
        if not self._arrays:
            self._create_arrays(first.shape, native_dtype(first.dtype))
        for i, f in enumerate(frames):
            if not self.series or _series_key(f.series) != _series_key(self.current_series()):
                self._note_segment(f.series, len(self) + i)
        t0, t1 = len(self), len(self) + len(frames)
        for a in self._arrays.values():
            a.resize((t1, *a.shape[1:]))
        ts = np.array([f.timestamp for f in frames], dtype=np.float64)
        ids = np.array([int(f.frame_id) for f in frames], dtype=np.int64)
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
        self._n = t1
        self._status_counts[Status.PENDING] += len(frames)
        seg_start = int(self.series[-1]["first"])
        if self._seg_first is None or seg_start >= t0:
            k = max(seg_start - t0, 0)
            self._seg_first = (int(ids[k]), float(ts[k]))
        self._last = (int(ids[-1]), float(ts[-1]))
        if counters is not None:
            self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()
        return range(t0, t1)

    def _note_segment(self, series: Any, first: int) -> None:
        if self.series and int(self.series[-1]["first"]) == first:
            self.series[-1]["series"] = series
        else:
            if self.series:
                self.series[-1].pop("meta", None)
            self.series.append({"series": series, "first": first, "meta": {}})
            self._seg_first = None
        self._write_segment(len(self.series) - 1, self.series[-1])

    def _write_segment(self, i: int, segment: Mapping[str, Any]) -> None:
        """Segment i as its own small group (one file: O(1) per segment, written once)."""
        folder = self.path / SEGMENTS / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"zarr_format": 3, "node_type": "group", "attributes": _jsonable(segment)}
        _atomic_write(folder / "zarr.json",
                      json.dumps(doc, allow_nan=False, separators=(",", ":")).encode())

    def _set_status(self, t: int, status: Status) -> None:
        old = self._read_status(t)
        if self._fast:
            self._fast["status"].write(t, np.array([int(status)], np.uint8))
        else:
            self._arrays["status"][t] = np.uint8(status)
        self._status_counts[old] -= 1
        self._status_counts[int(status)] += 1

    def _read_status(self, t: int) -> int:
        if self._fast:
            got = self._fast["status"].read(t)
            return int(got[0]) if got is not None else int(Status.PENDING)
        return int(self._arrays["status"][t])

    def write_result(self, t: int, *, status: Status, popout: np.ndarray | None = None,
                     volume: np.ndarray | None = None, loss: float = math.nan,
                     counters: Mapping[str, int] | None = None,
                     shift: tuple[float, float] | None = None,
                     defocus: float | None = None) -> None:
        """Write frame t's volumes, loss, ``shift`` (dy, dx) Å and lens ``defocus`` Å (None:
        not measured; a store made before these arrays existed skips them), then its status,
        then ``counters``."""
        if not 0 <= t < len(self):
            raise IndexError(f"frame index {t} is outside the store (0..{len(self) - 1})")
        shape = self.volume_shape
        for name, vol in (("popout", popout), ("volume", volume)):
            if vol is not None:
                vol = np.asarray(vol, dtype=np.float32)
                if vol.shape != shape:
                    raise ValueError(f"{name} of frame {t} has shape {vol.shape}, expected {shape}")
                self._arrays[name][t] = vol
        self._arrays["loss"][t] = np.float32(loss)
        if shift is not None and "shift" in self._arrays:
            self._arrays["shift"][t] = np.asarray(shift, dtype=np.float32)
        if defocus is not None and "defocus" in self._arrays:
            self._arrays["defocus"][t] = np.float32(defocus)
        self._set_status(t, status)
        if counters is not None:
            self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()

    def mark(self, ts: Sequence[int], status: Status,
             counters: Mapping[str, int] | None = None) -> None:
        """Set the status of frames ``ts`` (e.g. skipped by the ``latest`` policy)."""
        for t in ts:
            if not 0 <= int(t) < len(self):
                raise IndexError(f"frame index {t} is outside the store (0..{len(self) - 1})")
            self._set_status(int(t), status)
        if counters is not None:
            self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()

    def set_counters(self, counters: Mapping[str, int]) -> None:
        self.counters.update({k: int(counters[k]) for k in COUNTERS if k in counters})
        self._write_attrs()

    def frame_interval(self) -> float:
        """Seconds between frames: measured from the latest series' timestamps and frame
        numbers when it has two or more frames, else ``stream.frame_interval`` from the config."""
        if self._seg_first is not None and self._last is not None:
            (id0, t0), (id1, t1) = self._seg_first, self._last
            if id1 != id0:
                dt = float((t1 - t0) / (id1 - id0))
                if math.isfinite(dt) and dt > 0:
                    return dt
        return float(self.config.stream.frame_interval)

    def _reconcile(self) -> None:
        """Counters of what the committed table holds: they cannot drift from it."""
        self.counters["received"] = len(self)
        self.counters["skipped"] = self._status_counts[Status.SKIPPED]
        self.counters["failed"] = self._status_counts[Status.FAILED]

    def _write_attrs(self) -> None:
        s = self.config.sample
        self._reconcile()
        interval = self.frame_interval()
        attrs: dict[str, Any] = {}
        view: dict[str, Any] = {}
        if self._arrays:  # OME-Zarr's multiscales may only name a `volume` that exists
            v = self.view
            # A binned pixel's centre is its raw block's centre: raw index y0 + (bin - 1) / 2.
            half = (v.bin - 1) / 2
            attrs["ome"] = multiscales(
                "volume", frame_interval=interval, slice_thickness=s.slice_thickness,
                pixel_size=v.pixel_size,
                translation=((v.roi[0] + half) * s.pixel_size, (v.roi[1] + half) * s.pixel_size))
            view = {"view": v.attrs()}
        self._group.update_attributes({  # one metadata write (attrs.update makes one per key)
            **attrs,
            "stream3d": {
                "version": __version__,
                "config": self.config.to_dict(),
                "counters": dict(self.counters),
                "frames": len(self),
                "frame_interval": interval,
                "segments": len(self.series),
                "writer": {"pid": os.getpid()},
                **view,
            },
        })

    def close(self) -> None:
        """Final attributes, then the consolidated metadata (once, at the end of a run), then
        the writer lock is released."""
        if self._closed:
            return
        try:
            self._write_attrs()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "consolidated metadata is not in the v3 spec"
                zarr.consolidate_metadata(self.path)
            self._closed = True
        finally:
            self.release()

    def release(self) -> None:
        """Give up the writer lock (nothing more is written through this object)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
