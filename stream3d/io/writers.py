"""Files of a simulated movie, written frame by frame so a long movie never sits in RAM.

* :class:`MrcMovieWriter`: ``movie.mrc``, raw counts (t, y, x) as an MRC2014 image stack,
  float32 or uint16 (clipped to 0..65535), voxel size = pixel size (Å).
* :class:`TruthWriter`: ``truth.zarr``, a Zarr v3 group with the ground truth in the run
  store's (t, z, y, x) layout and OME-NGFF axes::

      occupancy  (t, z, y, x) float32  material fraction in [0, 1]; NaN until written
      potential  (t, z, y, x) float32  real part of the potential (V, relative to solvent)
      shift      (t, 2)       float64  lateral specimen shift (dy, dx) Å applied to frame t
      frame_id   (t,)         int64    frame number (-1 until written)
      timestamp  (t,)         float64  s
      attributes: ome (multiscales of ``occupancy``), stream3d = {version, config, kind: "truth",
      membrane: share of each slice (z,) the support membranes fill (they are not objects)}
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import mrcfile
import numpy as np
import zarr

from stream3d._version import __version__
from stream3d.config import Config
from stream3d.ome import multiscales
from stream3d.specimen.membrane import membranes_profile

UINT16_MAX = np.iinfo(np.uint16).max
_MRC_MODES = {"float32": 2, "uint16": 6}  # MRC2014 data modes


class MrcMovieWriter:
    """Raw counts frame by frame into a memory-mapped MRC stack; header stats kept on the fly."""

    def __init__(self, path: Path, *, frames: int, ny: int, nx: int, dtype: str,
                 pixel_size: float, label: str = "") -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.clipped = 0  # pixels clipped to the uint16 range
        self._mrc = mrcfile.new_mmap(self.path, shape=(frames, ny, nx),
                                     mrc_mode=_MRC_MODES[dtype], overwrite=True)
        self._mrc.set_image_stack()  # a movie: ny x nx images, not a volume
        self._mrc.voxel_size = pixel_size
        if label:
            self._mrc.add_label(label[:80])
        self._stats = [np.inf, -np.inf, 0.0, 0.0, 0]  # min, max, sum, sum of squares, count

    def write(self, t: int, counts: np.ndarray) -> None:
        """Store frame ``t`` (counts, any real dtype), clipping to uint16 when that is the dtype."""
        if self.dtype == np.uint16:
            self.clipped += int(np.count_nonzero((counts < 0) | (counts > UINT16_MAX)))
            counts = np.clip(np.rint(counts), 0, UINT16_MAX)
        frame = counts.astype(self.dtype)
        self._mrc.data[t] = frame
        values = frame.astype(np.float64)
        s = self._stats
        s[0], s[1] = min(s[0], values.min()), max(s[1], values.max())
        s[2] += values.sum()
        s[3] += np.square(values).sum()
        s[4] += values.size

    def close(self) -> None:
        lo, hi, total, squares, n = self._stats
        if n:
            mean = total / n
            header = self._mrc.header
            header.dmin, header.dmax, header.dmean = np.float32(lo), np.float32(hi), np.float32(mean)
            header.rms = np.float32(np.sqrt(max(squares / n - mean * mean, 0.0)))
        self._mrc.close()

    def __enter__(self) -> MrcMovieWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class TruthWriter:
    """Ground-truth occupancy and potential, one (z, y, x) chunk per frame."""

    def __init__(self, path: Path, config: Config) -> None:
        self.path = Path(path)
        sim, s = config.simulate, config.sample
        frames, shape = sim.frames, (s.slices, sim.ny, sim.nx)
        root = zarr.create_group(store=str(self.path), zarr_format=3, overwrite=True)
        volume = dict(shape=(frames, *shape), chunks=(1, *shape), dtype="float32",
                      fill_value=np.nan, dimension_names=("t", "z", "y", "x"))
        self.occupancy = root.create_array("occupancy", **volume)
        self.potential = root.create_array("potential", **volume)
        self.shift = root.create_array("shift", shape=(frames, 2), chunks=(frames, 2),
                                       dtype="float64", fill_value=np.nan,
                                       dimension_names=("t", "yx"))
        self.frame_id = root.create_array("frame_id", shape=(frames,), chunks=(frames,),
                                          dtype="int64", fill_value=-1, dimension_names=("t",))
        self.timestamp = root.create_array("timestamp", shape=(frames,), chunks=(frames,),
                                           dtype="float64", fill_value=np.nan,
                                           dimension_names=("t",))
        root.attrs.update({
            "ome": multiscales("occupancy", frame_interval=sim.frame_interval,
                               slice_thickness=s.slice_thickness, pixel_size=s.pixel_size,
                               name="truth"),
            "stream3d": {"version": __version__, "config": config.to_dict(), "kind": "truth",
                         # The support membranes (laterally uniform, not objects: occupancy
                         # leaves them out, potential holds them): the share of each slice
                         # (slice 0 first) they fill. An attribute, not an array: every
                         # array of the store runs along t.
                         "membrane": [float(v) for v in membranes_profile(s)]},
        })
        self._interval = sim.frame_interval

    def write(self, t: int, occupancy: np.ndarray, potential: np.ndarray,
              shift: tuple[float, float]) -> None:
        """Frame ``t``'s truth; ``frame_id`` last, so a frame with an id is complete."""
        self.occupancy[t] = occupancy
        self.potential[t] = np.real(potential).astype(np.float32)
        self.shift[t] = np.asarray(shift, dtype=np.float64)
        self.timestamp[t] = t * self._interval
        self.frame_id[t] = t
