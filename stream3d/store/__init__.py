"""The run store: a Zarr v3 group holding a movie's raw frames and its 4D (t, z, y, x) volumes.

This package is the only code that writes a run store (docs/architecture.md, "Run store"). Layout::

    OUT.zarr/
      frames     (t, y, x)     raw frames exactly as received (dtype kept)
      popout     (t, z, y, x)  float32 pop-out volume (V); NaN where not computed
      volume     (t, z, y, x)  float32 refined volume (V); NaN where not reconstructed
      frame_id   (t,) int64    detector frame number (-1 = fill, never committed)
      timestamp  (t,) float64  seconds
      status     (t,) uint8    0 pending, 1 refined, 2 skipped, 3 failed
      loss       (t,) float32  final data loss
      segments/  one small group per series segment: attributes {series, first, meta}
      masked     (t,) int32    pixels kept out of compute (detector mask, NODATA); -1 = not known
      shift      (t, 2) float32  measured drift (y, x) Å against the run's first frame; NaN = not
                               measured (stream.register = false, or not reconstructed yet)
      defocus    (t,) float32  lens defocus (Å) the frame was reconstructed with; NaN = not tracked
      attributes: ome (OME-NGFF 0.5 multiscales of ``volume``: binned pixel size, ROI offset) and
                  stream3d = {version, config, counters, frames, frame_interval, segments,
                              writer: {pid}, view: {roi, bin, shape, pixel_size, origin}}

``popout`` and ``volume`` cover what compute sees (stream3d.view): ``stream.roi`` of the raw
frame, binned ``stream.bin`` x ``stream.bin``; ``frames`` always holds the whole raw frame.

One writer per store: :meth:`RunStore.open` takes an exclusive lock on the store's folder
(:mod:`stream3d.store_lock`) and a second writer is refused at once, naming the holder's pid.

How a killed run stays consistent (every chunk and metadata file is written atomically by
zarr's LocalStore: temporary file, then rename):

* Appending frames: resize every array to the new length, write the raw frames and timestamps,
  then ``frame_id`` last; ``frame_id`` is the commit mark. Only then are the attributes
  (counters) rewritten. On reopening, the store is cut back to the longest prefix whose
  ``frame_id`` is committed, so a frame is either fully there or not there at all.
* Results: ``popout``, ``volume`` and ``loss`` chunks of frame t, then ``status[t]``; a frame
  whose status is still 0 (pending) is simply reconstructed again when the run resumes.
* Creating: the group and its attributes are built in a hidden sibling folder, which is then
  renamed to the store's path, so a kill during creation leaves no half-made store behind.
* Counters: ``received``, ``skipped`` and ``failed`` are what the committed table holds (frames,
  statuses), so they never drift from it after a crash or a write error.
* Series metadata is written once per segment (its own small group), never with each batch.
* Consolidated metadata is written only by :meth:`RunStore.close` and removed when a store is
  reopened for writing, so a reader never sees a stale consolidated view of a growing store.

Modules, one job each: :mod:`~stream3d.store.schema` (layout, codes, counters, reading),
:mod:`~stream3d.store.writer` (:class:`RunStore`), :mod:`~stream3d.store.chunks` (the append
path's direct chunk writer), :mod:`~stream3d.store.recovery` (reopening after a kill).
"""

# Every name stream3d.store held when it was one module stays importable from here.
from stream3d.store.chunks import _atomic_write, _ChunkFiles, _numcodecs_blosc  # noqa: F401
from stream3d.store.recovery import (  # noqa: F401
    _check_same_physics, _remove_abandoned_creations, _remove_partial_files,
)
from stream3d.store.schema import (  # noqa: F401
    _PHYSICAL_SECTIONS, _RAW_CODECS, ARRAYS, COMPUTE_COUNTERS, COUNTERS, INGEST_COUNTERS,
    MAX_FRAME_ID, OPTIONAL, SEGMENTS, STORABLE_DTYPES, TABLE, RawFrame, Status, _jsonable,
    _series_key, check_out_path, native_dtype, open_run, read_segments,
)
from stream3d.store.writer import RunStore  # noqa: F401
