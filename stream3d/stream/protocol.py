"""The native wire protocol (docs/architecture.md "Wire protocol"): ZeroMQ multipart messages.

Part 0 is UTF-8 JSON with ``htype``::

    {"htype": "start", "series": S, "meta": {...optional, config sections/keys...}}
    {"htype": "frame", "series": S, "frame": N, "shape": [ny, nx], "dtype": "<u2",
     "timestamp": T}                          + part 1: raw C-order bytes of that shape/dtype
    {"htype": "end", "series": S, "frames": count}

Frames of a series are numbered from 0 (``end.frames`` is then the count sent), which is what
lets a receiver count frames lost before its first frame and after its last one.

:func:`decode` checks one message on its own (JSON, keys, types, dtype, byte count, part
count) and raises :class:`Malformed` with a :class:`Kind`; checks that need history (a frame
before its series started, a frame whose shape differs from the run's) are in
:mod:`stream3d.stream.tracker`. Nothing is pickled: headers are JSON, pixels raw bytes.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream3d.store import MAX_FRAME_ID, STORABLE_DTYPES

# A JSON header longer than this is refused before it is parsed (a header is ~200 bytes; a
# start's meta is kept up to 64 kB, see stream.meta).
MAX_HEADER_BYTES = 1 << 20


class Kind(str, enum.Enum):
    """Every way a message can be malformed (each counted and logged once per run)."""

    NOT_JSON = "not_json"  # part 0 is not UTF-8 JSON
    MISSING_KEYS = "missing_keys"  # no htype, or a key the htype needs is absent
    BAD_VALUE = "bad_value"  # a key has the wrong type or an impossible value
    UNKNOWN_HTYPE = "unknown_htype"  # htype is not start / frame / end
    UNKNOWN_DTYPE = "unknown_dtype"  # dtype is not a numeric numpy type string
    BYTE_COUNT = "byte_count"  # part 1 length != prod(shape) * itemsize
    PART_COUNT = "part_count"  # frame without exactly 2 parts, start/end without exactly 1
    BEFORE_START = "before_start"  # a frame or end of a series that was never started
    SHAPE_CHANGED = "shape_changed"  # a frame whose shape/dtype differs from the run's frames


class Malformed(Exception):
    """A message that breaks the protocol; ``kind`` says how, the text says what."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Start:
    series: Any
    meta: Mapping[str, Any] = field(default_factory=dict)
    meta_dropped: int = 0  # entries of the sent meta refused by the receiver (stream.meta)


@dataclass(frozen=True)
class FrameMessage:
    series: Any
    frame: int
    timestamp: float
    data: np.ndarray  # (ny, nx), read-only view of the received bytes
    masked: int = -1  # pixels excluded from compute (detector mask, NODATA); -1 = not known


@dataclass(frozen=True)
class End:
    series: Any
    frames: int


Message = Start | FrameMessage | End

_REQUIRED = {"start": ("series",), "frame": ("series", "frame", "shape", "dtype", "timestamp"),
             "end": ("series", "frames")}
_PARTS = {"start": 1, "frame": 2, "end": 1}
# Integer and floating types only; complex, bool, object, strings, datetimes, records are refused.
_NUMERIC_KINDS = "uif"


# ------------------------------------------------------------------------------------ encode
def _header(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_start(series: Any, meta: Mapping[str, Any] | None = None) -> list[bytes]:
    """The ``start`` message of a series; ``meta`` holds optics as config sections/keys."""
    return [_header({"htype": "start", "series": series, "meta": dict(meta or {})})]


def encode_frame(series: Any, frame: int, timestamp: float, data: np.ndarray) -> list[bytes]:
    """A ``frame`` message: JSON header + the raw C-order bytes of ``data`` (y, x)."""
    data = np.ascontiguousarray(data)
    head = {"htype": "frame", "series": series, "frame": int(frame), "shape": list(data.shape),
            "dtype": data.dtype.str, "timestamp": float(timestamp)}
    return [_header(head), data.tobytes()]


def encode_end(series: Any, frames: int) -> list[bytes]:
    """The ``end`` message: ``frames`` = how many frames the series had (numbered 0..frames-1)."""
    return [_header({"htype": "end", "series": series, "frames": int(frames)})]


# ------------------------------------------------------------------------------------ decode
def decode(parts: Sequence[bytes | memoryview]) -> Message:
    """One multipart message -> :class:`Start` | :class:`FrameMessage` | :class:`End`.

    Raises :class:`Malformed` for anything else; never any other exception.
    """
    if not parts:
        raise Malformed(Kind.PART_COUNT, "empty message")
    if len(parts[0]) > MAX_HEADER_BYTES:
        raise Malformed(Kind.NOT_JSON, f"part 0 has {len(parts[0])} bytes, more than a header "
                                       f"may have ({MAX_HEADER_BYTES})")
    try:
        head = json.loads(bytes(parts[0]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Malformed(Kind.NOT_JSON, f"part 0 is not UTF-8 JSON ({len(parts[0])} bytes)") from None
    if not isinstance(head, dict) or "htype" not in head:
        raise Malformed(Kind.MISSING_KEYS, "part 0 is JSON without an htype")
    htype = head["htype"]
    if not isinstance(htype, str) or htype not in _REQUIRED:
        raise Malformed(Kind.UNKNOWN_HTYPE, f"htype {str(htype)[:40]!r}")
    if len(parts) != _PARTS[htype]:
        raise Malformed(Kind.PART_COUNT, f"{htype} with {len(parts)} parts, expected {_PARTS[htype]}")
    missing = [k for k in _REQUIRED[htype] if k not in head]
    if missing:
        raise Malformed(Kind.MISSING_KEYS, f"{htype} without {', '.join(missing)}")
    series = head["series"]
    if not _is_series(series):
        raise Malformed(Kind.BAD_VALUE, f"{htype}.series must be a string or integer")
    if htype == "start":
        meta = head.get("meta", {})
        if not isinstance(meta, dict):
            raise Malformed(Kind.BAD_VALUE, "start.meta must be an object")
        return Start(series, meta)
    if htype == "end":
        if not _is_int(head["frames"]) or not 0 <= head["frames"] <= MAX_FRAME_ID:
            raise Malformed(Kind.BAD_VALUE, "end.frames must be an integer in 0..2^63-1")
        return End(series, head["frames"])
    return _decode_frame(head, parts[1])


def _decode_frame(head: dict[str, Any], payload: bytes | memoryview) -> FrameMessage:
    frame, shape, timestamp = head["frame"], head["shape"], head["timestamp"]
    if not _is_int(frame) or not 0 <= frame <= MAX_FRAME_ID:
        raise Malformed(Kind.BAD_VALUE, f"frame.frame must be an integer in 0..2^63-1, got "
                                        f"{str(frame)[:40]}")
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(_is_int(n) and n >= 1 for n in shape)):
        raise Malformed(Kind.BAD_VALUE, f"frame.shape must be [ny, nx] >= 1, got {str(shape)[:40]}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) \
            or not math.isfinite(timestamp):
        raise Malformed(Kind.BAD_VALUE, "frame.timestamp must be a finite number (s)")
    dtype = _parse_dtype(head["dtype"])
    expected = shape[0] * shape[1] * dtype.itemsize
    if len(payload) != expected:
        raise Malformed(Kind.BYTE_COUNT, f"frame {frame}: {len(payload)} bytes, "
                                         f"{shape} {dtype.str} needs {expected}")
    data = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return FrameMessage(head["series"], frame, float(timestamp), data)


def _parse_dtype(text: Any) -> np.dtype:
    if not isinstance(text, str) or len(text) > 8:
        raise Malformed(Kind.UNKNOWN_DTYPE, f"dtype {str(text)[:20]!r}")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError, SyntaxError):
        raise Malformed(Kind.UNKNOWN_DTYPE, f"dtype {text!r}") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise Malformed(Kind.UNKNOWN_DTYPE, f"dtype {text!r} is not an integer or float type")
    if dtype.newbyteorder("=") not in STORABLE_DTYPES:
        raise Malformed(Kind.UNKNOWN_DTYPE, f"dtype {text!r} cannot be stored (integers of 1-8 "
                                            "bytes, float16/32/64 only)")
    return dtype


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_series(value: Any) -> bool:
    return isinstance(value, str) or _is_int(value)
