"""Movie files: lazy readers of vendor formats (:mod:`~stream3d.io.readers`), opening any of
them or a run store's raw frames as one kind of movie (:mod:`~stream3d.io.movies`), what their
metadata says (:mod:`~stream3d.io.meta`; units: Å, s), the optics a replay uses
(:mod:`~stream3d.io.calibration`, :mod:`~stream3d.io.replay`), and the files of a simulated
movie written frame by frame (:mod:`~stream3d.io.writers`)."""

from stream3d.io.meta import MovieMeta, length_in_angstrom, time_in_seconds
from stream3d.io.readers import SUPPORTED

__all__ = ["MovieMeta", "SUPPORTED", "length_in_angstrom", "time_in_seconds"]
