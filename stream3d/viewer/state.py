"""What the page shows, read from a run store while it is written: the run's state and one
frame's pictures. Read-only: no lock is taken and nothing is written.

Reads only what it shows: the per-frame table incrementally (:mod:`stream3d.viewer.table`),
the group's attributes (one small JSON file), and the chunks of the frames the page asks for,
each rendered once per frame and status and kept in a small cache.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from stream3d.analysis.run import STATUS_NAMES
from stream3d.errors import UserError
from stream3d.viewer import images
from stream3d.viewer.table import FAILED, REFINED, SKIPPED, Table

KINDS = ("raw", "popout", "height", "thickness", "render")
HISTORY_POINTS = 600  # the plots over time get this many samples from first frame to now
RATE_WINDOW_S = 10.0  # frames/s are averaged over this many seconds of history
MAX_LOSS_POINTS = 2000  # the loss plot gets at most this many points (every k-th frame)


def check_store(path: Path) -> None:
    """:class:`UserError` (one line) unless ``path`` is a stream3d run store."""
    meta = _group_meta(path)
    if meta is None:
        raise UserError(f"{path} is not a Zarr run store (no readable zarr.json)")
    if "stream3d" not in meta.get("attributes", {}):
        raise UserError(f"{path} is a Zarr group but not a stream3d run store")


def _group_meta(path: Path) -> dict | None:
    try:
        return json.loads((Path(path) / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class RunView:
    """A run store seen by the viewer; :meth:`state` and :meth:`picture` are thread-safe."""

    def __init__(self, path: str | Path, *, cache: int = 256) -> None:
        self.path = Path(path)
        check_store(self.path)
        self.table = Table(self.path)
        self._attrs: dict[str, Any] = {}
        self._finished = False
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_size = cache
        self._arrays: dict[str, Any] = {}
        self._raw_scale: images.Scale | None = None
        self._refreshed = 0.0
        self.refresh()

    # ------------------------------------------------------------------------------ state
    def refresh(self) -> None:
        """Read what changed in the store (table, attributes)."""
        meta = _group_meta(self.path) or {}
        self.table.refresh()
        with self._lock:
            self._attrs = dict(meta.get("attributes", {}).get("stream3d", {}))
            # RunStore.close writes consolidated metadata; reopening for writing removes it.
            self._finished = bool(meta.get("consolidated_metadata"))
            self._refreshed = time.monotonic()

    def refresh_if_older(self, seconds: float) -> None:
        if time.monotonic() - self._refreshed > seconds:
            self.refresh()

    @property
    def sample(self) -> dict[str, Any]:
        return dict((self._attrs.get("config") or {}).get("sample") or {})

    def _geometry(self) -> tuple[int, float, float, float]:
        """(slices, slice thickness Å, pixel size Å of the volumes, material potential V)."""
        s = self.sample
        view = self._attrs.get("view") or {}
        return (int(s.get("slices", 1)), float(s.get("slice_thickness", 1.0)),
                float(view.get("pixel_size", s.get("pixel_size", 1.0))),
                float(s.get("potential", 1.0)) or 1.0)

    def scales(self) -> dict[str, images.Scale]:
        """The run's fixed colour scales: heights and thickness 0..cell depth (nm); raw counts
        over the first frame's 0.5-99.5 % range."""
        nz, dz, _, _ = self._geometry()
        depth_nm = nz * dz / 10.0
        out = {"height": images.Scale(0.0, depth_nm, "nm", "viridis"),
               "thickness": images.Scale(0.0, depth_nm, "nm", "magma")}
        raw = self._raw_scale_of_run()
        if raw is not None:
            out["raw"] = raw
        return out

    def _raw_scale_of_run(self) -> images.Scale | None:
        if self._raw_scale is None and self.table.n > 0:
            first = np.asarray(self._read("frames", 0), dtype=np.float64)
            lo, hi = np.percentile(first, [0.5, 99.5])
            self._raw_scale = images.Scale(float(lo), float(max(hi, lo + 1)), "counts", "gray")
        return self._raw_scale

    def state(self) -> dict[str, Any]:
        """The run as JSON-ready data: docs/architecture.md's ``frames``, ``refined``, ``latest`` and more
        (counts of each status, lag in frames, frames/s, history, per-frame loss, scales)."""
        n, status, loss = self.table.snapshot()
        refined = np.flatnonzero(status == REFINED)
        with self._lock:
            attrs = dict(self._attrs)
            finished = self._finished
        now = time.time()
        # A finished run's history ends with its last frame, a live one's now.
        history = self.table.history(now if not finished else 0.0, HISTORY_POINTS)
        received_fps, fps = self.table.rates(now, RATE_WINDOW_S) if not finished else (0.0, 0.0)
        nz, dz, px, potential = self._geometry()
        skipped, failed = int((status == SKIPPED).sum()), int((status == FAILED).sum())
        step = max(1, math.ceil(refined.size / MAX_LOSS_POINTS))
        shown = refined[::step]
        return {
            "path": str(self.path),
            "frames": n,
            "refined": int(refined.size),
            "latest": int(refined[-1]) if refined.size else -1,
            "skipped": skipped,
            "failed": failed,
            "pending": n - int(refined.size) - skipped - failed,
            "lag": n - int(refined.size) - skipped - failed,  # frames stored, not yet done
            "fps": round(fps, 3),
            "received_fps": round(received_fps, 3),
            "writing": not finished,
            "counters": dict(attrs.get("counters") or {}),
            "frame_interval": attrs.get("frame_interval"),
            "volume_shape": [nz, *((attrs.get("view") or {}).get("shape") or [])],
            "sampling": [dz, px, px],
            "scales": {k: s.describe() for k, s in self.scales().items()},
            "history": [[round(t, 3), a, b] for t, a, b in history],
            "loss": {"t": shown.tolist(),
                     "v": [None if not np.isfinite(v) else float(v) for v in loss[shown]]},
            "time": now,
        }

    # ------------------------------------------------------------------------------ frames
    def _read(self, name: str, t: int) -> np.ndarray:
        """Chunk t of array ``name`` (zarr, read-only; reopened when the writer grew it)."""
        import zarr

        a = self._arrays.get(name)
        if a is None or t >= a.shape[0]:
            a = zarr.open_array(self.path / name, mode="r")
            self._arrays[name] = a
        return np.asarray(a[t])

    def _cached(self, key: tuple, make):
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def _check_index(self, t: int) -> int:
        n, status, _ = self.table.snapshot()
        if not 0 <= t < n:
            raise IndexError(f"frame {t} is not stored (0..{n - 1})")
        return int(status[t])

    def maps(self, t: int, name: str) -> dict[str, np.ndarray]:
        """Top / bottom height and thickness maps (nm) of ``name`` (volume or popout) at t."""
        from stream3d.analysis.maps import thickness, top_bottom

        code = self._check_index(t)

        def make():
            nz, dz, _, potential = self._geometry()
            occ = self._read(name, t) / potential
            top, bottom = top_bottom(occ, dz)
            thick = thickness(occ, dz)
            if not np.isfinite(occ).any():
                thick = np.full_like(thick, np.nan)
            else:
                thick = np.where(np.isfinite(top), thick, np.nan)
            return {"top": top / 10.0, "bottom": bottom / 10.0, "thickness": thick / 10.0,
                    "material": occ > 0.5}
        return self._cached((t, name, code, "maps"), make)

    def picture(self, t: int, kind: str, turn: int = 0) -> bytes:
        """PNG of frame t: raw counts, pop-out or refined top height, refined thickness, or the
        shaded 3D render of the refined volume (``turn`` quarter turns about the beam)."""
        if kind not in KINDS:
            raise KeyError(kind)
        code = self._check_index(t)
        return self._cached((t, kind, code, turn % 4), lambda: self._draw(t, kind, turn))

    def _draw(self, t: int, kind: str, turn: int) -> bytes:
        scales = self.scales()
        if kind == "raw":
            return images.png(scales["raw"].colours(self._read("frames", t)))
        if kind == "popout":
            return images.png(scales["height"].colours(self.maps(t, "popout")["top"]))
        m = self.maps(t, "volume")
        if kind == "height":
            return images.png(scales["height"].colours(m["top"]))
        if kind == "thickness":
            return images.png(scales["thickness"].colours(m["thickness"]))
        h = scales["height"]
        zoom = max(1, 192 // max(m["top"].shape))
        dz_px = 0.35 * zoom * m["top"].shape[0] / max(h.hi - h.lo, 1e-9)
        return images.png(images.height_render(m["top"], m["bottom"], h, dz_px=dz_px,
                                               turn=turn, zoom=zoom))

    def info(self, t: int) -> dict[str, Any]:
        """Frame t's facts: status, detector frame number, timestamp (s), loss, and for a
        refined frame its material volume (nm³), objects (connected parts) and height range."""
        from scipy import ndimage

        from stream3d.analysis.run import STATUS_NAMES  # the store's codes (zarr: imported here)

        code = self._check_index(t)
        _, _, loss = self.table.snapshot()
        out: dict[str, Any] = {
            "t": t, "status": STATUS_NAMES.get(code, str(code)),
            "frame_id": int(self._read("frame_id", t)),
            "timestamp": _finite(float(self._read("timestamp", t))),
            "loss": _finite(float(loss[t])),
        }
        if code == REFINED:
            nz, dz, px, _ = self._geometry()
            m = self.maps(t, "volume")
            _, objects = ndimage.label(m["material"], structure=np.ones((3, 3, 3)))
            out.update({
                "material_nm3": float(m["material"].sum() * dz * px * px / 1000.0),
                "objects": int(objects),
                "top_nm": _finite(float(np.nanmax(m["top"]))) if np.isfinite(m["top"]).any()
                else None,
                "bottom_nm": _finite(float(np.nanmin(m["bottom"])))
                if np.isfinite(m["bottom"]).any() else None,
            })
        return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None
