"""The run store's layout: array names, status codes, counters, storable dtypes, and reading
a store's group and series segments (no writes here; see docs/architecture.md, Run store)."""

from __future__ import annotations

import enum
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from stream3d.errors import UserError

# The run's counters (docs/architecture.md), defined here once: ingest (stream.tracker) counts
# the first four, compute (stream.compute) the last two, the store persists all of them.
INGEST_COUNTERS = ("received", "malformed", "gaps", "duplicates")
COMPUTE_COUNTERS = ("skipped", "failed")
COUNTERS = INGEST_COUNTERS + COMPUTE_COUNTERS
TABLE = ("frame_id", "timestamp", "status", "loss")
ARRAYS = ("frames", "popout", "volume", *TABLE)
# Per-frame arrays a store may lack (made by an older version): absent ones are not written.
OPTIONAL = ("masked", "shift", "defocus")
# Sections whose values change what the stored frames and volumes mean: resuming a store with
# a config that differs in these is refused (other sections, e.g. [refine], may change).
_PHYSICAL_SECTIONS = ("microscope", "sample", "detector")
# Frame dtypes the store holds (zarr v3 core types); anything else is refused before it is stored.
STORABLE_DTYPES = frozenset(np.dtype(t) for t in (
    "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8"))
# Detector frame numbers are stored as int64.
MAX_FRAME_ID = 2**63 - 1
SEGMENTS = "segments"
# Raw frames arrive fast: lz4 + bit-shuffle compresses detector counts well at ~GB/s.
_RAW_CODECS = (BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle"),)




class Status(enum.IntEnum):
    """Per-frame reconstruction state, stored in ``status`` (uint8): the one definition of the
    codes (analysis and the summaries take names and values from here)."""

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


def check_out_path(path: Path) -> None:
    """:class:`UserError` when ``path`` holds something other than a run store (or nothing)."""
    if path.exists() and not (path / "zarr.json").exists():
        if path.is_file() or any(path.iterdir()):
            raise UserError(f"--out {path} exists and is not a Zarr run store")


def read_segments(group: zarr.Group) -> list[dict[str, Any]]:
    """The series segments of a run store, in order: {series, first, meta[, meta_dropped]}."""
    if SEGMENTS not in group.group_keys():
        return [dict(s) for s in group.attrs.get("stream3d", {}).get("series", [])]
    parent = group[SEGMENTS]
    found = {int(name): dict(child.attrs) for name, child in parent.groups() if name.isdigit()}
    out = []
    for i in range(len(found)):
        if i not in found:
            break
        out.append(found[i])
    return out


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


def _series_key(series: Any) -> Any:
    """A hashable key for a series id (JSON may deliver lists or dicts)."""
    if isinstance(series, (list, dict)):
        import json

        return json.dumps(series, sort_keys=True)
    return series


def _jsonable(segment: Mapping[str, Any]) -> dict[str, Any]:
    out = {"series": segment["series"], "first": int(segment["first"]),
           "meta": dict(segment.get("meta") or {})}
    if segment.get("meta_dropped"):
        out["meta_dropped"] = int(segment["meta_dropped"])
    return out
