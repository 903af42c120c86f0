"""Movie files: lazy readers of vendor formats and what their metadata says (units: Å, s)."""

from stream3d.io.meta import MovieMeta, length_in_angstrom, time_in_seconds
from stream3d.io.readers import SUPPORTED

__all__ = ["MovieMeta", "SUPPORTED", "length_in_angstrom", "time_in_seconds"]
