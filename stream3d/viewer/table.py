"""The per-frame table of a run store being written, read incrementally and read-only.

The viewer follows a store that another process appends to (:mod:`stream3d.store`). It never
takes the writer's lock and never writes; it reads the table's one-element chunk files
directly (``frame_id``, ``status``, ``loss`` are stored uncompressed, one chunk per frame) and
only what changed since its last look:

* stored frames: the committed prefix. The writer resizes, then writes ``frame_id[t]`` last
  (the commit mark), frame after frame, so committed chunks form a prefix: a binary search over
  which ``frame_id`` chunk files exist finds its end in O(log n) file checks.
* statuses: a status chunk file exists only once the writer has set it (pending is the fill
  value), so one directory listing says which frames have a result; only frames not yet known
  to be refined are (re)read, with their loss (written before the status).
* when: a chunk file's modification time is when the writer stored it, so ``frame_id``'s says
  when each frame was stored and ``status``'s when it got its result (s since the epoch, this
  machine's clock): the run's history, even for a view opened after the run.

Arrays in another form (compressed tables of an older or foreign store) are read through zarr.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# stream3d.store.Status's codes, here without importing zarr (tests/test_one_owner.py ties them).
REFINED, SKIPPED, FAILED = 1, 2, 3


@dataclass(frozen=True)
class Column:
    """One (t,) array of the store: where its chunk files are and how to decode them."""

    path: Path  # the array's folder
    dtype: np.dtype
    separator: str  # chunk key separator: "c.5" ("." ) or "c/5" ("/")
    raw: bool  # chunks are plain little-endian bytes (no compressor)
    fill: float

    @classmethod
    def open(cls, folder: Path) -> Column | None:
        """The column stored in ``folder`` (None while the writer has not made it yet)."""
        try:
            meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        codecs = [c.get("name") for c in meta.get("codecs", [])]
        endian = (meta.get("codecs") or [{}])[0].get("configuration", {}).get("endian", "little")
        sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
        chunked_by_one = meta.get("chunk_grid", {}).get("configuration", {}).get(
            "chunk_shape") == [1]
        fill = meta.get("fill_value", 0)
        fill = float("nan") if fill in ("NaN", None) else float(fill)
        return cls(folder, np.dtype(meta["data_type"]).newbyteorder("<"), sep,
                   codecs == ["bytes"] and endian == "little" and chunked_by_one, fill)

    def length(self) -> int:
        """The array's current length (its shape, as the writer last resized it)."""
        try:
            meta = json.loads((self.path / "zarr.json").read_text(encoding="utf-8"))
            return int(meta["shape"][0])
        except (OSError, ValueError, KeyError, IndexError):
            return 0

    def chunk_path(self, t: int) -> str:
        return os.path.join(os.fspath(self.path), f"c{self.separator}{t}")

    def has(self, t: int) -> bool:
        """True when chunk t has been written."""
        return os.path.exists(self.chunk_path(t))

    def written(self) -> np.ndarray:
        """Indices t whose chunk files exist (one directory listing), ascending."""
        folder = self.path if self.separator == "." else self.path / "c"
        found = []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    name = entry.name
                    if self.separator == ".":
                        if not name.startswith("c."):
                            continue
                        name = name[2:]
                    if name.isdigit():  # skips zarr.json and *.partial files of atomic writes
                        found.append(int(name))
        except FileNotFoundError:
            pass
        return np.sort(np.asarray(found, dtype=np.int64))

    def read(self, ts: np.ndarray) -> np.ndarray:
        """Values at indices ``ts`` (the fill value where a chunk is not written)."""
        out = np.full(len(ts), self.fill, dtype=np.float64)
        if not self.raw:
            return self._read_zarr(ts, out)
        for i, t in enumerate(ts):
            try:
                with open(self.chunk_path(int(t)), "rb") as f:
                    payload = f.read()
            except FileNotFoundError:
                continue
            if len(payload) == self.dtype.itemsize:
                out[i] = np.frombuffer(payload, dtype=self.dtype)[0]
        return out

    def mtimes(self, ts: np.ndarray) -> np.ndarray:
        """Modification times (s since the epoch) of chunks ``ts``; NaN where not written."""
        out = np.full(len(ts), np.nan)
        if not self.raw:
            return out
        for i, t in enumerate(ts):
            try:
                out[i] = os.stat(self.chunk_path(int(t))).st_mtime
            except FileNotFoundError:
                pass
        return out

    def _read_zarr(self, ts: np.ndarray, out: np.ndarray) -> np.ndarray:
        import zarr

        if not len(ts):
            return out
        a = zarr.open_array(self.path, mode="r")
        values = np.asarray(a[int(ts.min()): int(ts.max()) + 1], dtype=np.float64)
        return values[np.asarray(ts) - int(ts.min())]


class Table:
    """The committed frames and their statuses and losses, refreshed incrementally.

    :meth:`refresh` is cheap when nothing changed (two small JSON reads and a directory
    listing); thread-safe (one lock around a refresh and a snapshot).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self.n = 0  # committed frames
        self.status = np.zeros(0, np.uint8)  # (n,) 0 pending, 1 refined, 2 skipped, 3 failed
        self.loss = np.zeros(0, np.float32)  # (n,) final data loss; NaN until known
        self.stored_at = np.zeros(0)  # (n,) s since the epoch when frame t was stored
        self.done_at = np.zeros(0)  # (n,) s since the epoch of frame t's status; NaN: pending
        self._cols: dict[str, Column] = {}

    def _column(self, name: str) -> Column | None:
        col = self._cols.get(name)
        if col is None:
            col = Column.open(self.root / name)
            if col is not None:
                self._cols[name] = col
        return col

    def refresh(self) -> None:
        """Read what the writer added or changed since the last refresh."""
        with self._lock:
            ids = self._column("frame_id")
            if ids is None:
                return
            n = self._committed(ids)
            if n > self.n:
                self.status = np.concatenate([self.status, np.zeros(n - self.n, np.uint8)])
                self.loss = np.concatenate([self.loss, np.full(n - self.n, np.nan, np.float32)])
                self.stored_at = np.concatenate([self.stored_at,
                                                 ids.mtimes(np.arange(self.n, n))])
                self.done_at = np.concatenate([self.done_at, np.full(n - self.n, np.nan)])
                self.n = n
            st, loss = self._column("status"), self._column("loss")
            if st is None:
                return
            have = st.written() if st.raw else np.arange(self.n)
            have = have[have < self.n]
            todo = have[self.status[have] != REFINED]  # refined frames do not change again
            if todo.size:
                self.status[todo] = st.read(todo).astype(np.uint8)
                self.done_at[todo] = st.mtimes(todo)
                if loss is not None:
                    self.loss[todo] = loss.read(todo).astype(np.float32)

    def _committed(self, ids: Column) -> int:
        """Length of the committed prefix (frame_id chunks written), at least the last one."""
        length = ids.length()
        if not ids.raw:
            values = ids.read(np.arange(length))
            bad = np.flatnonzero(values < 0)
            return int(bad[0]) if bad.size else length
        lo, hi = min(self.n, length), length  # chunk lo-1 exists; find the first missing >= lo
        if hi > lo and ids.has(hi - 1):
            return hi
        while lo < hi:
            mid = (lo + hi) // 2
            if ids.has(mid):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(frames, status copy, loss copy) as of the last refresh."""
        with self._lock:
            return self.n, self.status.copy(), self.loss.copy()

    def history(self, now: float, points: int = 600) -> list[tuple[float, int, int]]:
        """(time s since the epoch, frames stored, frames refined by then) at up to ``points``
        times from the first frame stored to ``now``, from the chunk files' times."""
        with self._lock:
            stored = np.sort(self.stored_at[np.isfinite(self.stored_at)])
            refined = self.status == REFINED
            done = np.sort(self.done_at[refined & np.isfinite(self.done_at)])
        if not stored.size:
            return []
        end = max(now, stored[-1], done[-1] if done.size else 0.0)
        times = np.linspace(stored[0], end, points) if end > stored[0] else stored[:1]
        return list(zip(times.tolist(),
                        np.searchsorted(stored, times, side="right").tolist(),
                        np.searchsorted(done, times, side="right").tolist()))

    def rates(self, now: float, window: float) -> tuple[float, float]:
        """(frames stored, frames refined) per second over the last ``window`` s before
        ``now`` (or since the first frame was stored, when that is more recent)."""
        with self._lock:
            stored = self.stored_at[np.isfinite(self.stored_at)]
            done = self.done_at[(self.status == REFINED) & np.isfinite(self.done_at)]
        if not stored.size:
            return 0.0, 0.0
        span = min(window, now - float(stored.min()))
        if span <= 0:
            return 0.0, 0.0
        start = now - span
        return (float((stored > start).sum() / span), float((done > start).sum() / span))
